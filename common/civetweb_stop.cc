#include "common/civetweb_stop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace kiln {
namespace {

constexpr absl::Duration kWakeInterval = absl::Milliseconds(20);

// Opens and closes one connection to the listener; false when the host is not a literal
// address (nothing to poke).
bool PokeListener(const std::string& listen, int port) {
  std::string host = listen.substr(0, listen.rfind(':'));
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
    if (host == "::") host = "::1";
    auto* addr = reinterpret_cast<sockaddr_in6*>(&storage);
    addr->sin6_family = AF_INET6;
    addr->sin6_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET6, host.c_str(), &addr->sin6_addr) != 1) return false;
    length = sizeof(sockaddr_in6);
  } else {
    if (host.empty() || host == "0.0.0.0" || host == listen) host = "127.0.0.1";
    auto* addr = reinterpret_cast<sockaddr_in*>(&storage);
    addr->sin_family = AF_INET;
    addr->sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &addr->sin_addr) != 1) return false;
    length = sizeof(sockaddr_in);
  }
  int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // Refused once the listener is closed: that is fine, the poke is only a wake-up.
  (void)::connect(fd, reinterpret_cast<sockaddr*>(&storage), length);
  ::close(fd);
  return true;
}

}  // namespace

void StopWakingListener(const std::function<void()>& stop, const std::string& listen, int port) {
  absl::Notification stopped;
  std::thread waker([&] {
    while (PokeListener(listen, port) && !stopped.WaitForNotificationWithTimeout(kWakeInterval)) {
    }
  });
  stop();
  stopped.Notify();
  waker.join();
}

}  // namespace kiln
