// See progress_line.h.
#include "cli/progress_line.h"

#include <algorithm>
#include <utility>

namespace kiln::cli {

namespace {
// Carriage return, then erase to the end of the line.
constexpr std::string_view kErase = "\r\x1b[K";
}  // namespace

ProgressLine::ProgressLine(std::streambuf* terminal, std::streambuf* log, int columns)
    : terminal_(terminal), log_(log), columns_(std::max(columns, 10)) {}

ProgressLine::~ProgressLine() { Close(); }

std::string ProgressLine::Printable(std::string_view text, int columns) {
  const int limit = std::max(columns, 2) - 1;  // The last column stays free: no wrap.
  std::string out;
  int width = 0;
  for (size_t i = 0; i < text.size() && width < limit;) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = 1;
    if (c >= 0xC0) length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xC0) || i + length > text.size()) {
      out.push_back('?');  // A control character, or a stray or cut-off UTF-8 byte.
      ++i;
    } else if (c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
      out.push_back('?');  // C1 controls (U+0080..U+009F).
      i += 2;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
    ++width;
  }
  return out;
}

void ProgressLine::SetStatus(std::string_view text) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  status_ = Printable(text, columns_);
  if (at_line_start_) DrawLocked();
}

void ProgressLine::Close() {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  EraseLocked();
  closed_ = true;
}

void ProgressLine::WriteLog(const char* s, std::streamsize n) {
  if (n <= 0) return;
  absl::MutexLock lock(&mu_);
  EraseLocked();
  log_->sputn(s, n);
  log_->pubsync();
  at_line_start_ = s[n - 1] == '\n';
  if (at_line_start_ && !closed_) DrawLocked();
}

void ProgressLine::EraseLocked() {
  if (!shown_) return;
  WriteTerminalLocked(kErase);
  shown_ = false;
}

void ProgressLine::DrawLocked() {
  if (status_.empty()) return;
  std::string bytes(kErase);
  bytes.append(status_);
  WriteTerminalLocked(bytes);
  shown_ = true;
}

void ProgressLine::WriteTerminalLocked(std::string_view bytes) {
  terminal_->sputn(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  terminal_->pubsync();
}

std::streambuf::int_type ProgressLine::LogBuffer::overflow(int_type ch) {
  if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
  const char c = traits_type::to_char_type(ch);
  owner_->WriteLog(&c, 1);
  return ch;
}

std::streamsize ProgressLine::LogBuffer::xsputn(const char* s, std::streamsize n) {
  owner_->WriteLog(s, n);
  return n;
}

int ProgressLine::LogBuffer::sync() { return 0; }

Ticker::Ticker(absl::Duration period, std::function<void()> tick) {
  thread_ = std::thread([this, period, tick = std::move(tick)] {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      mu_.Unlock();
      tick();
      mu_.Lock();
      mu_.AwaitWithTimeout(absl::Condition(&stop_), period);
    }
  });
}

Ticker::~Ticker() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

}  // namespace kiln::cli
