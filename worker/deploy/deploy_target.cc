#include "worker/deploy/deploy_target.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kiln::worker {
namespace {

constexpr size_t kMaxSlotChars = 40;
constexpr char kPreviewPrefix[] = "preview-";
constexpr size_t kHashSuffixChars = 9;  // "-" and 8 hex digits.

}  // namespace

std::string PreviewSlot(const std::string& branch) {
  // [a-z0-9] kept, anything else becomes '-', runs of '-' collapse, none at either end.
  std::string safe;
  for (char ch : branch) {
    char c = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch;
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (ok) {
      safe.push_back(c);
    } else if (!safe.empty() && safe.back() != '-') {
      safe.push_back('-');
    }
  }
  while (!safe.empty() && safe.back() == '-') safe.pop_back();
  std::string slot = kPreviewPrefix + safe;
  if (!safe.empty() && safe == branch && slot.size() <= kMaxSlotChars) return slot;
  // Changed or too long: two branches could now share a name, so the original's hash tells
  // them apart (FNV-1a: stable across builds, so a restarted worker finds the same slot).
  uint32_t hash = 2166136261u;
  for (unsigned char c : branch) hash = (hash ^ c) * 16777619u;
  size_t keep = kMaxSlotChars - kHashSuffixChars - (sizeof(kPreviewPrefix) - 1);
  if (safe.size() > keep) safe.resize(keep);
  while (!safe.empty() && safe.back() == '-') safe.pop_back();
  return absl::StrCat(kPreviewPrefix, safe, safe.empty() ? "" : "-", absl::StrFormat("%08x", hash));
}

}  // namespace kiln::worker
