// A status line kept under a live log on a terminal: `kiln deploy logs -f` shows the build's
// output as it comes and, on the last row, what the deployment is doing now and for how long
// ("web-1a2b3c4 BUILDING 0:42 | build 0:31 | STEP 3/7: RUN make"). It is redrawn every second,
// so a silent step still shows that time passes.
//
// The log and the line share the terminal: before log bytes are written the line is erased
// ("\r" and erase-to-end-of-line), and it is drawn again once the log stands at the start of a
// line (never in the middle of one, which would split it). The status text comes from the
// server and from build output, so control characters in it become '?', and it is cut to the
// terminal's width so it never wraps (a wrapped line could not be erased by "\r").
//
// Only for terminals: main() passes the raw stdout buffer only when stdout is one.
// Thread-safe: the log is written by the reading thread, the status by a ticker thread.
#pragma once

#include <functional>
#include <streambuf>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln::cli {

class ProgressLine {
 public:
  // `terminal` receives the line's control sequences and text; `log` (the terminal-safe log
  // buffer, writing to the same terminal) receives the log bytes. `columns`: the width.
  ProgressLine(std::streambuf* terminal, std::streambuf* log, int columns);
  // Erases the line.
  ~ProgressLine();
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // The buffer to write the log through.
  std::streambuf* log_buffer() { return &log_buffer_; }

  // Replaces the text (made printable and cut to the width) and draws it when the log is at
  // the start of a line.
  void SetStatus(std::string_view text);
  // Erases the line; nothing is drawn after this.
  void Close();

  // What SetStatus draws for `text`: control characters replaced, cut to `columns - 1`
  // characters (UTF-8 sequences are kept whole).
  static std::string Printable(std::string_view text, int columns);

 private:
  class LogBuffer final : public std::streambuf {
   public:
    explicit LogBuffer(ProgressLine* owner) : owner_(owner) {}

   protected:
    int_type overflow(int_type ch) override;
    std::streamsize xsputn(const char* s, std::streamsize n) override;
    int sync() override;

   private:
    ProgressLine* owner_;
  };

  void WriteLog(const char* s, std::streamsize n);
  void EraseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrawLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteTerminalLocked(std::string_view bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::streambuf* const terminal_;
  std::streambuf* const log_;
  const int columns_;
  LogBuffer log_buffer_{this};
  absl::Mutex mu_;
  std::string status_ ABSL_GUARDED_BY(mu_);
  bool shown_ ABSL_GUARDED_BY(mu_) = false;
  bool at_line_start_ ABSL_GUARDED_BY(mu_) = true;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Calls `tick` now and then every `period` on a thread of its own until destroyed (the
// destructor wakes and joins it at once).
class Ticker {
 public:
  Ticker(absl::Duration period, std::function<void()> tick);
  ~Ticker();
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

 private:
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kiln::cli
