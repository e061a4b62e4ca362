// Shell completion scripts from the app's commands and flags; see completion.h.
#include "cli/completion.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln::cli {
namespace {

// One command of the tree: its path ("/workflow/list"), the words that reach it from its parent
// (name and aliases), and what may follow it (its subcommands and flags).
struct Node {
  std::string path;
  std::vector<std::string> patterns;
  std::vector<std::string> words;
};

void Collect(const CLI::App& app, const std::string& path, std::vector<std::string> patterns,
             std::vector<Node>* nodes) {
  Node node{path, std::move(patterns), {}};
  std::vector<const CLI::App*> subcommands =
      app.get_subcommands([](const CLI::App* sub) { return !sub->get_name().empty(); });
  for (const CLI::App* sub : subcommands) {
    node.words.push_back(sub->get_name());
    for (const std::string& alias : sub->get_aliases()) node.words.push_back(alias);
  }
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& name : option->get_lnames()) node.words.push_back("--" + name);
    for (const std::string& name : option->get_snames()) node.words.push_back("-" + name);
  }
  nodes->push_back(std::move(node));
  for (const CLI::App* sub : subcommands) {
    const std::string sub_path = absl::StrCat(path, "/", sub->get_name());
    std::vector<std::string> sub_patterns = {sub_path};
    for (const std::string& alias : sub->get_aliases()) {
      sub_patterns.push_back(absl::StrCat(path, "/", alias));
    }
    Collect(*sub, sub_path, std::move(sub_patterns), nodes);
  }
}

// The shell function's body both shells share: walk the words before the cursor down the
// command tree into `cmd`, then choose the candidates of that command into `candidates`.
// `first`/`last`/`word` are how each shell names the loop bounds and the i-th word.
std::string WalkAndChoose(const std::vector<Node>& nodes, const std::string& first,
                          const std::string& last, const std::string& word) {
  std::string text = absl::StrCat("  local cmd=\"\" i\n  for ((i = ", first, "; i < ", last,
                                  "; i++)); do\n    case \"$cmd/", word, "\" in\n");
  for (const Node& node : nodes) {
    if (node.path.empty()) continue;
    absl::StrAppend(&text, "      ", absl::StrJoin(node.patterns, "|"), ") cmd=", node.path,
                    " ;;\n");
  }
  absl::StrAppend(&text, "    esac\n  done\n  local candidates=\"\"\n  case \"$cmd\" in\n");
  for (const Node& node : nodes) {
    absl::StrAppend(&text, "    \"", node.path, "\") candidates=\"", absl::StrJoin(node.words, " "),
                    "\" ;;\n");
  }
  absl::StrAppend(&text, "  esac\n");
  return text;
}

}  // namespace

std::string CompletionScript(const CLI::App& app, Shell shell, const std::string& program) {
  std::vector<Node> nodes;
  Collect(app, "", {}, &nodes);
  const std::string function = absl::StrCat("_", program);
  if (shell == Shell::kBash) {
    return absl::StrCat("# bash completion for ", program, ": source <(", program,
                        " completion bash)\n", function, "() {\n",
                        WalkAndChoose(nodes, "1", "COMP_CWORD", "${COMP_WORDS[i]}"),
                        "  COMPREPLY=($(compgen -W \"$candidates\" -- "
                        "\"${COMP_WORDS[COMP_CWORD]}\"))\n}\ncomplete -F ",
                        function, " ", program, "\n");
  }
  // zsh: words[1] is the program, CURRENT the index of the word being completed. `path` is
  // not used as a name: zsh ties it to $PATH.
  return absl::StrCat(
      "#compdef ", program, "\n# zsh completion for ", program, ": put this file on $fpath as ",
      function, ", or source <(", program, " completion zsh) after compinit\n", function, "() {\n",
      WalkAndChoose(nodes, "2", "CURRENT", "${words[i]}"),
      "  compadd -- ${=candidates}\n}\nif [ \"$funcstack[1]\" = \"", function, "\" ]; then\n  ",
      function, " \"$@\"\nelse\n  compdef ", function, " ", program, "\nfi\n");
}

}  // namespace kiln::cli
