#include "llm4sbr/core/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace llm4sbr {

namespace {

std::vector<std::string> split_key(const std::string& dotted_key) {
  std::vector<std::string> parts;
  std::stringstream ss(dotted_key);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (part.empty()) throw ConfigError("config key '" + dotted_key + "' has an empty component");
    parts.push_back(part);
  }
  return parts;
}

// Emits maps with sorted keys so that equal settings hash equally whatever their order in the file.
void emit_canonical(const YAML::Node& n, YAML::Emitter& out) {
  if (n.IsMap()) {
    // A std::map sorts by key without ever assigning one YAML::Node to another: yaml-cpp's
    // operator= writes through to the referenced node, so sorting a vector of nodes corrupts them.
    std::map<std::string, YAML::Node> items;
    for (const auto& kv : n) items.emplace(kv.first.as<std::string>(), kv.second);
    out << YAML::BeginMap;
    for (const auto& [k, v] : items) {
      out << YAML::Key << k << YAML::Value;
      emit_canonical(v, out);
    }
    out << YAML::EndMap;
  } else if (n.IsSequence()) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const auto& v : n) emit_canonical(v, out);
    out << YAML::EndSeq;
  } else if (n.IsScalar()) {
    out << n.Scalar();
  } else {
    out << YAML::Null;
  }
}

// Where the first map key at or below `n` that is not a plain scalar is (YAML allows `? [a, b]: c` and null
// keys; settings are named by plain keys, and every reader of a config converts keys to strings).
std::optional<YAML::Mark> first_complex_key(const YAML::Node& n) {
  if (n.IsMap()) {
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) return kv.first.Mark();
      if (auto mark = first_complex_key(kv.second)) return mark;
    }
  } else if (n.IsSequence()) {
    for (const auto& v : n)
      if (auto mark = first_complex_key(v)) return mark;
  }
  return std::nullopt;
}

constexpr const char* kComplexKey = "a config key must be a plain name, not a list, a mapping or null";

}  // namespace

YAML::Node merge_yaml(const YAML::Node& base, const YAML::Node& over) {
  if (!over.IsMap() || !base.IsMap()) return YAML::Clone(over);
  YAML::Node out = YAML::Clone(base);
  for (const auto& kv : over) {
    const auto key = kv.first.as<std::string>();
    out[key] = out[key] ? merge_yaml(out[key], kv.second) : YAML::Clone(kv.second);
  }
  return out;
}

namespace {

// The file names of an `include:` value: one name or a list of names (null: none). Anything else (a map,
// a nested list) is an error naming the file and line, not a yaml-cpp exception without either.
std::vector<std::string> include_list(const YAML::Node& inc, const std::filesystem::path& file) {
  auto refuse = [&](const YAML::Node& at) {
    return InputError(file.string(), at.Mark().line + 1, "include", "expected a file name or a list of file names");
  };
  if (inc.IsNull()) return {};
  if (inc.IsScalar()) return {inc.Scalar()};
  if (!inc.IsSequence()) throw refuse(inc);
  std::vector<std::string> files;
  for (const auto& f : inc) {
    if (!f.IsScalar()) throw refuse(f);
    files.push_back(f.Scalar());
  }
  return files;
}

// Loads `file` and, depth first, the files it includes; `chain` holds the files being loaded above it, so
// that an include cycle is an error naming the cycle instead of an endless recursion.
YAML::Node load_with_includes(const std::filesystem::path& file, std::vector<std::filesystem::path>& chain) {
  std::filesystem::path canonical;
  try {
    if (!std::filesystem::exists(file)) {
      if (chain.empty()) throw InputError(file.string(), 0, "", "config file not found");
      throw InputError(chain.back().string(), 0, "include", "included file " + file.string() + " not found");
    }
    if (!std::filesystem::is_regular_file(file))
      throw InputError(chain.empty() ? file.string() : chain.back().string(), 0, chain.empty() ? "" : "include",
                       file.string() + " is not a config file (a directory?)");
    canonical = std::filesystem::weakly_canonical(file);
  } catch (const std::filesystem::filesystem_error& e) {
    // A name the file system refuses (too long, say; found by fuzz/config_yaml_fuzz.cpp): an error naming the
    // config, not a std::filesystem exception that names neither it nor the key.
    throw InputError(chain.empty() ? file.string() : chain.back().string(), 0, chain.empty() ? "" : "include",
                     fmt::format("cannot read {}: {}", file.string(), e.code().message()));
  }
  if (std::find(chain.begin(), chain.end(), canonical) != chain.end()) {
    std::string cycle;
    for (const auto& f : chain) cycle += f.string() + " -> ";
    throw InputError(chain.back().string(), 0, "include", "include cycle: " + cycle + canonical.string());
  }
  YAML::Node doc;
  try {
    doc = YAML::LoadFile(file.string());
  } catch (const YAML::Exception& e) {
    throw InputError(file.string(), e.mark.line + 1, "", "invalid YAML: " + e.msg);
  }
  if (!doc || doc.IsNull()) doc = YAML::Node(YAML::NodeType::Map);
  if (!doc.IsMap()) throw InputError(file.string(), 1, "", "a config must be a YAML mapping");
  if (const auto mark = first_complex_key(doc)) throw InputError(file.string(), mark->line + 1, "", kComplexKey);
  YAML::Node merged(YAML::NodeType::Map);
  if (doc["include"]) {
    const auto files = include_list(doc["include"], file);
    chain.push_back(canonical);
    for (const auto& f : files) merged = merge_yaml(merged, load_with_includes(file.parent_path() / f, chain));
    chain.pop_back();
    doc.remove("include");
  }
  return merge_yaml(merged, doc);
}

}  // namespace

Config Config::load(const std::filesystem::path& file) {
  std::vector<std::filesystem::path> chain;
  return Config(load_with_includes(file, chain));
}

Config Config::parse(const std::string& text) {
  YAML::Node doc = YAML::Load(text);
  if (!doc || doc.IsNull()) doc = YAML::Node(YAML::NodeType::Map);
  if (first_complex_key(doc)) throw ConfigError(kComplexKey);
  return Config(doc);
}

void Config::apply_overrides(const std::vector<std::string>& overrides) {
  for (const auto& item : overrides) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError(fmt::format("override '{}' must look like key=value (e.g. train.epochs=3)", item));
    // An empty value is most often an unset shell variable (`--set train.epochs=$EPOCHS`); read as YAML it is
    // null, which every key takes as "not set": a run with the default, not the value meant, and no word of it.
    const auto value = item.substr(eq + 1);
    if (value.find_first_not_of(" \t") == std::string::npos)
      throw ConfigError(fmt::format("override '{}' has no value for config key '{}' (an empty string is '{}\"\"'; "
                                    "'{}null' falls back to the default)",
                                    item, item.substr(0, eq), item.substr(0, eq + 1), item.substr(0, eq + 1)));
    set(item.substr(0, eq), value);
  }
}

void Config::set(const std::string& dotted_key, const std::string& value) {
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception&) {
    parsed = YAML::Node(value);
  }
  if (!parsed) parsed = YAML::Node(value);
  if (first_complex_key(parsed)) throw ConfigError(fmt::format("config key '{}': {}", dotted_key, kComplexKey));
  set_node(dotted_key, parsed);
}

void Config::set_node(const std::string& dotted_key, const YAML::Node& value) {
  auto parts = split_key(dotted_key);
  // yaml-cpp nodes are handles: walking with operator[] on non-const nodes creates the missing maps.
  std::vector<YAML::Node> chain{root_};
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    if (next && !next.IsMap() && !next.IsNull())
      throw ConfigError(fmt::format("config key '{}': '{}' is a value, not a section", dotted_key, parts[i]));
    if (!next || next.IsNull()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[parts[i]];
    }
    chain.push_back(next);
  }
  chain.back()[parts.back()] = value;
}

YAML::Node Config::node(const std::string& dotted_key) const {
  // Walk by const handles, then clone only the sub-tree found: a const operator[] never inserts a missing
  // key, and reset() rebinds a handle where `cur = next` would overwrite the node cur refers to (yaml-cpp's
  // assignment writes through). Cloning the whole tree for each lookup made every get cost O(config size).
  YAML::Node cur(root_);
  for (const auto& part : split_key(dotted_key)) {  // none for "", the whole config
    if (!cur.IsMap()) return YAML::Node();
    const YAML::Node& map = cur;
    const YAML::Node next = map[part];
    if (!next) return YAML::Node();
    cur.reset(next);
  }
  return YAML::Clone(cur);
}

bool Config::has(const std::string& dotted_key) const {
  YAML::Node n = node(dotted_key);
  return n && !n.IsNull();
}

Config Config::sub(const std::string& dotted_key) const {
  YAML::Node n = node(dotted_key);
  return n && n.IsMap() ? Config(n) : Config();
}

std::string Config::dump() const {
  YAML::Emitter out;
  out << root_;
  return std::string(out.c_str()) + "\n";
}

std::string Config::canonical(const std::string& dotted_key) const {
  YAML::Emitter out;
  emit_canonical(node(dotted_key), out);
  return out.c_str();
}

}  // namespace llm4sbr
