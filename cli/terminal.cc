#include "cli/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>

namespace kiln::cli {
namespace {

// Longest colour sequence passed through; anything longer is shown escaped.
constexpr size_t kMaxSequence = 32;

bool IsColourParameter(unsigned char c) { return (c >= '0' && c <= '9') || c == ';'; }

// Passes in every mode with nothing held back.
bool IsPlain(unsigned char c) { return (c >= 0x20 && c != 0x7f && c != 0xc2) || c == '\n'; }

}  // namespace

SafeTextBuf::~SafeTextBuf() {
  Release();
  target_->pubsync();
}

void SafeTextBuf::Emit(const char* s, size_t n) {
  target_->sputn(s, static_cast<std::streamsize>(n));
}

void SafeTextBuf::EmitEscaped(unsigned char c) {
  char text[8];
  int n = std::snprintf(text, sizeof text, "\\x%02x", c);
  Emit(text, static_cast<size_t>(n));
}

void SafeTextBuf::Release() {
  if (pending_c2_) {
    pending_c2_ = false;
    Emit("\xc2", 1);  // a lone lead byte: not a control, the terminal shows a replacement
  }
  if (!sequence_.empty()) {
    EmitEscaped(0x1b);
    Emit(sequence_.data() + 1, sequence_.size() - 1);
    sequence_.clear();
  }
}

void SafeTextBuf::Put(unsigned char c) {
  if (!sequence_.empty()) {
    // kLog only: ESC, then '[', then colour parameters, ended by 'm'.
    if (sequence_.size() == 1 ? c == '[' : IsColourParameter(c)) {
      if (sequence_.size() < kMaxSequence) {
        sequence_.push_back(static_cast<char>(c));
        return;
      }
    } else if (c == 'm' && sequence_.size() >= 2) {
      sequence_.push_back('m');
      if (mode_ == Mode::kLog) Emit(sequence_.data(), sequence_.size());
      sequence_.clear();
      return;
    }
    Release();  // not a colour sequence: shown escaped, and `c` read afresh
  }
  if (pending_c2_) {
    pending_c2_ = false;
    if (c >= 0x80 && c <= 0x9f) {
      char text[8];
      int n = std::snprintf(text, sizeof text, "\\u%04x", c);
      Emit(text, static_cast<size_t>(n));
      return;
    }
    Emit("\xc2", 1);
  }
  if (c == 0xc2) {
    pending_c2_ = true;
    return;
  }
  if (c == '\n' || c == '\t') {
    Emit(reinterpret_cast<const char*>(&c), 1);
    return;
  }
  if (mode_ != Mode::kText) {
    if (c == '\r') {
      Emit("\r", 1);
      return;
    }
    if (c == 0x1b) {
      sequence_.push_back(static_cast<char>(c));
      return;
    }
  }
  if (c < 0x20 || c == 0x7f) {
    EmitEscaped(c);
    return;
  }
  Emit(reinterpret_cast<const char*>(&c), 1);
}

SafeTextBuf::int_type SafeTextBuf::overflow(int_type ch) {
  if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
  Put(static_cast<unsigned char>(traits_type::to_char_type(ch)));
  return ch;
}

std::streamsize SafeTextBuf::xsputn(const char* s, std::streamsize n) {
  std::streamsize i = 0;
  while (i < n) {
    // A run of bytes that pass as they are goes out in one write.
    std::streamsize plain = i;
    if (!pending_c2_ && sequence_.empty()) {
      while (plain < n && IsPlain(static_cast<unsigned char>(s[plain]))) ++plain;
    }
    if (plain > i) {
      Emit(s + i, static_cast<size_t>(plain - i));
      i = plain;
    } else {
      Put(static_cast<unsigned char>(s[i++]));
    }
  }
  return n;
}

int SafeTextBuf::sync() { return target_->pubsync(); }

bool StdoutIsTerminal() { return isatty(STDOUT_FILENO) == 1; }

int TerminalColumns() {
  winsize size{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

}  // namespace kiln::cli
