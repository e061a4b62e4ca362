// Output a terminal cannot be steered by. Workflow ids, names, reasons and payloads are chosen
// by whoever started or signalled a workflow; printed raw, an id holding ESC sequences could
// clear the operator's screen, retitle the window or hide lines. Everything the CLI prints goes
// through a SafeTextBuf:
//   kText  every control character but newline and tab is shown escaped ("\x1b"), and so are
//          the C1 controls as UTF-8 encodes them ("\u009b").
//   kLog   build and workflow logs on a terminal: as kText, but carriage returns and colour
//          sequences (ESC [ digits/';' m) pass, since build tools colour their output.
//   kLogPlain  as kLog, but colour sequences are dropped (`--no-color`, NO_COLOR).
// A log written to a file or pipe is not filtered at all (byte-exact), and JSON output escapes
// control characters itself.
#pragma once

#include <streambuf>
#include <string>

namespace kiln::cli {

class SafeTextBuf final : public std::streambuf {
 public:
  enum class Mode { kText, kLog, kLogPlain };
  SafeTextBuf(std::streambuf* target, Mode mode) : target_(target), mode_(mode) {}
  ~SafeTextBuf() override;

  SafeTextBuf(const SafeTextBuf&) = delete;
  SafeTextBuf& operator=(const SafeTextBuf&) = delete;

 protected:
  int_type overflow(int_type ch) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;
  int sync() override;

 private:
  void Put(unsigned char c);
  void Emit(const char* s, size_t n);
  void EmitEscaped(unsigned char c);
  // Writes what is held back (a lone 0xC2, an unfinished ESC sequence) escaped.
  void Release();

  std::streambuf* target_;
  Mode mode_;
  // A 0xC2 byte waiting for the next: C2 80..9F is a C1 control.
  bool pending_c2_ = false;
  // kLog: an ESC sequence being read, to pass it if it is a colour one.
  std::string sequence_;
};

// Whether standard output is a terminal.
bool StdoutIsTerminal();
// Standard output's width in columns when it is a terminal that says; otherwise 80.
int TerminalColumns();

}  // namespace kiln::cli
