// The web console's static files, embedded in the binary at build time (embed_files.cmake turns
// worker/console/static/ into a generated .cc): nothing is read from disk while serving. Each
// file is served at "/<its path under static/>", and "/" is index.html.
#pragma once

#include <cstddef>
#include <string_view>

namespace kiln::worker::console {

struct EmbeddedFile {
  const char* path;  // "/app.js"
  const unsigned char* data;
  size_t size;
};

// Defined by the generated file.
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;

// The file served at `path` ("/" is "/index.html"), or null.
const EmbeddedFile* FindStaticFile(std::string_view path);

// The Content-Type for a file's name by its extension; application/octet-stream for others.
std::string_view ContentTypeFor(std::string_view path);

}  // namespace kiln::worker::console
