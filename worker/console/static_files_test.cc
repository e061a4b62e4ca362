#include "worker/console/static_files.h"

#include <catch2/catch.hpp>
#include <regex>
#include <string>

namespace kiln::worker::console {
namespace {

std::string Text(const EmbeddedFile& file) {
  return std::string(reinterpret_cast<const char*>(file.data), file.size);
}

TEST_CASE("The console's files are embedded and found by path") {
  const EmbeddedFile* index = FindStaticFile("/");
  REQUIRE(index != nullptr);
  CHECK(std::string(index->path) == "/index.html");
  CHECK(FindStaticFile("/index.html") == index);
  CHECK(Text(*index).starts_with("<!doctype html>"));
  REQUIRE(FindStaticFile("/app.js") != nullptr);
  REQUIRE(FindStaticFile("/style.css") != nullptr);
  CHECK(FindStaticFile("/nope.js") == nullptr);
  CHECK(FindStaticFile("") == nullptr);
  CHECK(FindStaticFile("/../index.html") == nullptr);
}

TEST_CASE("Every embedded page loads its scripts from files and never inline") {
  // The Content-Security-Policy refuses inline scripts and styles: a page that had any would
  // break in the browser, so none may be embedded.
  const std::regex inline_script("<script(?![^>]*\\bsrc=)[^>]*>", std::regex::icase);
  const std::regex inline_handler("\\son[a-z]+\\s*=", std::regex::icase);
  const std::regex inline_style("<style|\\sstyle\\s*=", std::regex::icase);
  for (size_t i = 0; i < kEmbeddedFileCount; ++i) {
    std::string path = kEmbeddedFiles[i].path;
    if (!path.ends_with(".html")) continue;
    INFO(path);
    std::string text = Text(kEmbeddedFiles[i]);
    CHECK_FALSE(std::regex_search(text, inline_script));
    CHECK_FALSE(std::regex_search(text, inline_handler));
    CHECK_FALSE(std::regex_search(text, inline_style));
  }
}

TEST_CASE("Content types follow the file's extension") {
  CHECK(ContentTypeFor("/index.html") == "text/html; charset=utf-8");
  CHECK(ContentTypeFor("/app.js") == "text/javascript; charset=utf-8");
  CHECK(ContentTypeFor("/style.css") == "text/css; charset=utf-8");
  CHECK(ContentTypeFor("/x.bin") == "application/octet-stream");
}

}  // namespace
}  // namespace kiln::worker::console
