// Where workflow code called the SDK: the SDK functions that return something to await take a
// SourceLocation defaulted to SourceLocation::Current(), so each pending await knows the file,
// line and function of the workflow code that created it (the built-in "__stack_trace" query,
// `kiln workflow stack`). Nothing is computed at run time: the compiler fills in three
// constants at the call site.
//
// Not std::source_location: clang 14 with libstdc++ 12 (the fuzz preset, clang-tidy) does not
// provide it. The builtins below are the ones libstdc++'s own experimental version used, and
// both GCC and clang evaluate them where the defaulted argument is used, i.e. in the caller.
#pragma once

namespace kiln::sdk {

struct SourceLocation {
  // Empty and 0 when unknown (a call from inside the SDK).
  const char* file = "";
  int line = 0;
  // The unqualified name of the calling function ("operator()" in a lambda).
  const char* function = "";

  static constexpr SourceLocation Current(const char* file = __builtin_FILE(),
                                          int line = __builtin_LINE(),
                                          const char* function = __builtin_FUNCTION()) noexcept {
    return SourceLocation{file, line, function};
  }
};

}  // namespace kiln::sdk
