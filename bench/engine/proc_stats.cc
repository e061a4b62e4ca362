#include "bench/engine/proc_stats.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kiln::bench {

ProcStats ReadProc(pid_t pid) {
  ProcStats stats;
  if (pid == 0) return stats;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) stats.rss_kib = std::stoll(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) stats.peak_rss_kib = std::stoll(line.substr(6));
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t name_end = content.rfind(')');
  if (name_end == std::string::npos) return stats;
  // Past the command name (which may hold spaces): field 3 (state) is fields[0], so utime
  // (field 14) and stime (field 15) are fields[11] and fields[12].
  std::vector<std::string> fields = absl::StrSplit(content.substr(name_end + 2), ' ');
  int64_t utime = 0, stime = 0;
  if (fields.size() > 13 && absl::SimpleAtoi(fields[11], &utime) &&
      absl::SimpleAtoi(fields[12], &stime)) {
    stats.cpu_seconds = static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
  }
  return stats;
}

double ReadTreeCpu(pid_t pid) {
  if (pid == 0) return 0;
  double cpu = ReadProc(pid).cpu_seconds;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    pid_t child = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &child)) continue;
    std::ifstream stat(absl::StrCat("/proc/", child, "/stat"));
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t name_end = content.rfind(')');
    if (name_end == std::string::npos) continue;
    // Past the command name: state, then the parent's PID.
    std::vector<std::string> fields = absl::StrSplit(content.substr(name_end + 2), ' ');
    pid_t parent = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &parent) && parent == pid) {
      cpu += ReadProc(child).cpu_seconds;
    }
  }
  return cpu;
}

Switches ReadSwitches(pid_t pid) {
  Switches total;
  if (pid == 0) return total;
  std::error_code error;  // A process or thread that ended while we read: counted as far as read.
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
    std::ifstream status(task.path() / "status");
    std::string line;
    int64_t value = 0;
    while (std::getline(status, line)) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0 &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(24)), &value)) {
        total.voluntary += value;
      } else if (line.rfind("nonvoluntary_ctxt_switches:", 0) == 0 &&
                 absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(27)), &value)) {
        total.involuntary += value;
      }
    }
  }
  return total;
}

std::map<std::string, double> SumByLabel(const std::string& metrics_text, const std::string& metric,
                                         const std::string& label) {
  std::map<std::string, double> sums;
  std::istringstream lines(metrics_text);
  std::string line;
  const std::string head = metric + "{";
  const std::string label_head = label + "=\"";
  while (std::getline(lines, line)) {
    if (line.rfind(head, 0) != 0) continue;
    size_t value_at = line.find(label_head);
    size_t labels_end = line.rfind('}');
    if (value_at == std::string::npos || labels_end == std::string::npos) continue;
    value_at += label_head.size();
    size_t value_end = line.find('"', value_at);
    double value = 0;
    if (value_end == std::string::npos ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(line.substr(labels_end + 1)), &value)) {
      continue;
    }
    sums[line.substr(value_at, value_end - value_at)] += value;
  }
  return sums;
}

double Scalar(const std::string& metrics_text, const std::string& metric) {
  std::istringstream lines(metrics_text);
  std::string line;
  const std::string head = metric + " ";
  while (std::getline(lines, line)) {
    if (line.rfind(head, 0) != 0) continue;
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line.substr(head.size())), &value)) {
      return value;
    }
  }
  return 0;
}

}  // namespace kiln::bench
