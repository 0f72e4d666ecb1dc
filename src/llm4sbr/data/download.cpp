#include "llm4sbr/data/download.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/readers.hpp"

namespace llm4sbr::data {

namespace fs = std::filesystem;

namespace {

struct RemoteFile {
  std::string url;
  std::string name;    ///< file name in the dataset folder
  std::string sha256;  ///< empty: not pinned (official archives change rarely but are not pinned here)
  bool unzip = false;  ///< a zip whose top folder's files go into the dataset folder
};

const std::map<std::string, std::vector<RemoteFile>>& sources() {
  static const std::string grouplens = "https://files.grouplens.org/datasets/movielens/";
  // Beauty: the byte-exact public copies listed in shared/data/README.md, pinned by commit and checksum.
  static const std::string gram = "https://raw.githubusercontent.com/zhaodong-liu/GRAM/2c168a4cc12e70c464502149392943e091006835/rec_datasets/Beauty/";
  static const std::string tico = "https://raw.githubusercontent.com/KingGugu/TiCoSeRec/302b2959f27bb16bb77acae5a471de82819bd1bd/data/Beauty/";
  static const std::string dhr = "https://raw.githubusercontent.com/dh-r/LLM-Sequential-Recommendation/6464b39064f369b251580c63edbf635de0934101/beauty/";
  static const std::map<std::string, std::vector<RemoteFile>> s = {
      {"ml-1m", {{grouplens + "ml-1m.zip", "ml-1m.zip", "", true}}},
      {"ml-100k", {{grouplens + "ml-100k.zip", "ml-100k.zip", "", true}}},
      {"ml-latest-small", {{grouplens + "ml-latest-small.zip", "ml-latest-small.zip", "", true}}},
      {"beauty",
       {{gram + "user_sequence.txt", "user_sequence.txt", "47197cbee7bdc1896926e10d96b807dce0aecb9a1f0c2ccc887c21090237c9b7"},
        {tico + "Beauty_item_org_rank.txt", "Beauty_item_org_rank.txt", "b95614189df525e1eb69dad579e84c6086468f2bb42dab894038949240307c4f"},
        {tico + "Beauty_time_org_rank.txt", "Beauty_time_org_rank.txt", "4e6a6e30f9dba1985ad9adae79a891df6b403e2132f0422a6f6e88f67d1fcc75"},
        {dhr + "products_lookup.csv", "products_lookup.csv", "65133eca0615999df67fc5b26a93a7da762e53e613a083fd6b9e37174896d128"},
        {dhr + "item_id_to_int.json", "item_id_to_int.json", "3d1a1d362c7daeddf616057fae8fa24af9d70902fdaf4631852231a9953afa50"},
        {dhr + "session_id_to_int.json", "session_id_to_int.json", "3d9a0ab7effcce7460e486359f0d9a8a4c56b3ae46d731cad195dde43ab5967c"}}},
  };
  return s;
}

struct RemoteModel {
  std::string url;
  std::string kind;  ///< "chat" (Stage 1 LLM) or "embedding" (text encoder)
};

// Quantised GGUF files of the models a user most likely wants: the paper used Qwen-7B chat; the small
// Qwen2.5 models run on a CPU; bge-small and nomic-embed are GGUF text-embedding models for llama.cpp.
const std::map<std::string, RemoteModel>& model_sources() {
  static const std::string hf = "https://huggingface.co/";
  static const std::map<std::string, RemoteModel> m = {
      {"qwen2.5-0.5b-instruct", {hf + "Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf", "chat"}},
      {"qwen2.5-1.5b-instruct", {hf + "Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/main/qwen2.5-1.5b-instruct-q4_k_m.gguf", "chat"}},
      {"qwen2.5-7b-instruct", {hf + "bartowski/Qwen2.5-7B-Instruct-GGUF/resolve/main/Qwen2.5-7B-Instruct-Q4_K_M.gguf", "chat"}},
      {"bge-small-en-v1.5", {hf + "CompendiumLabs/bge-small-en-v1.5-gguf/resolve/main/bge-small-en-v1.5-q8_0.gguf", "embedding"}},
      {"nomic-embed-text-v1.5", {hf + "nomic-ai/nomic-embed-text-v1.5-GGUF/resolve/main/nomic-embed-text-v1.5.Q8_0.gguf", "embedding"}},
  };
  return m;
}

size_t write_to_stream(char* data, size_t size, size_t n, void* stream) {
  auto* out = static_cast<std::ofstream*>(stream);
  out->write(data, static_cast<std::streamsize>(size * n));
  return out->good() ? size * n : 0;
}

// Runs a shell command that the project relies on being installed (coreutils, unzip/python3).
std::string run_command(const std::string& cmd) {
  std::array<char, 512> buf{};
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw Error("cannot run: " + cmd);
  while (fgets(buf.data(), buf.size(), pipe)) out += buf.data();
  if (pclose(pipe) != 0) throw Error(fmt::format("command failed: {}\n{}", cmd, out));
  return out;
}

std::string sha256_of(const fs::path& file) {
  auto out = run_command(fmt::format("sha256sum '{}'", file.string()));
  return out.substr(0, out.find(' '));
}

void fetch(const std::string& url, const fs::path& target, const std::string& hint) {
  auto tmp = target;
  tmp += ".part";
  std::ofstream out(tmp, std::ios::binary);
  if (!out) throw Error("cannot write " + tmp.string());
  CURL* curl = curl_easy_init();
  if (!curl) throw Error("libcurl failed to initialise");
  char err[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_to_stream);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  out.close();
  if (rc != CURLE_OK) {
    fs::remove(tmp);
    throw Error(fmt::format("download of {} failed: {} ({}). Check the network, or copy {} into {} by hand{}", url,
                            err[0] ? err : curl_easy_strerror(rc), curl_easy_strerror(rc), target.filename().string(),
                            target.parent_path().string(), hint));
  }
  fs::rename(tmp, target);
}

}  // namespace

std::vector<std::string> downloadable_datasets() {
  std::vector<std::string> names;
  for (const auto& [name, files] : sources()) names.push_back(name);
  return names;
}

void download_dataset(const std::string& name, const fs::path& data_dir) {
  const std::string key = name == "amazon-beauty-2014" ? "beauty" : name;
  auto it = sources().find(key);
  if (it == sources().end())
    throw ConfigError(fmt::format("cannot download '{}'; known: {}", name, fmt::join(downloadable_datasets(), ", ")));
  const fs::path dir = data_dir / dataset_folder(key);
  const bool existed = fs::exists(dir);
  fs::create_directories(dir);
  // A failed download must not leave an empty folder that later reads as a dataset with missing files.
  struct RemoveIfEmpty {
    fs::path dir;
    bool keep;
    ~RemoveIfEmpty() {
      std::error_code ec;
      if (!keep && fs::is_empty(dir, ec)) fs::remove(dir, ec);
    }
  } guard{dir, existed};
  curl_global_init(CURL_GLOBAL_DEFAULT);
  for (const auto& f : it->second) {
    const fs::path target = dir / f.name;
    if (fs::exists(target) && !f.sha256.empty() && sha256_of(target) == f.sha256) {
      spdlog::info("download: {} already present", target.string());
      continue;
    }
    spdlog::info("download: {} -> {}", f.url, target.string());
    fetch(f.url, target, " (shared/data/README.md lists every file of this dataset)");
    if (!f.sha256.empty()) {
      auto got = sha256_of(target);
      if (got != f.sha256) {
        fs::remove(target);
        throw Error(fmt::format("checksum mismatch for {}: expected sha256 {}, got {}", f.url, f.sha256, got));
      }
    }
    if (f.unzip) {
      // The archives hold one top folder (ml-100k/...); its files go straight into the dataset folder.
      run_command(fmt::format("unzip -o -j -q '{}' -d '{}' 2>&1", target.string(), dir.string()));
      fs::remove(target);
    }
  }
  curl_global_cleanup();
  spdlog::info("download: {} is in {}", key, dir.string());
}

std::vector<std::string> downloadable_models() {
  std::vector<std::string> names;
  for (const auto& [name, m] : model_sources()) names.push_back(fmt::format("{} ({})", name, m.kind));
  return names;
}

fs::path download_model(const std::string& name, const fs::path& models_dir) {
  auto it = model_sources().find(name);
  if (it == model_sources().end())
    throw ConfigError(fmt::format("unknown model '{}'; known: {}", name, fmt::join(downloadable_models(), ", ")));
  const auto& url = it->second.url;
  const fs::path target = models_dir / url.substr(url.rfind('/') + 1);
  if (fs::exists(target)) {
    spdlog::info("download: {} is already there", target.string());
    return target;
  }
  const bool existed = fs::exists(models_dir);
  fs::create_directories(models_dir);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  spdlog::info("download: {} -> {}", url, target.string());
  try {
    fetch(url, target, " (any GGUF file works: set llm.model=llama:PATH or embed.encoder=llama:PATH)");
  } catch (...) {
    std::error_code ec;
    if (!existed && fs::is_empty(models_dir, ec)) fs::remove(models_dir, ec);  // leave nothing half-made behind
    curl_global_cleanup();
    throw;
  }
  curl_global_cleanup();
  const auto sha = sha256_of(target);
  std::ofstream(fs::path(target.string() + ".sha256")) << sha << "  " << target.filename().string() << "\n";
  spdlog::info("download: {} ({:.0f} MB, sha256 {}); use it with --set {}=llama:{}", target.string(),
               static_cast<double>(fs::file_size(target)) / 1e6, sha, it->second.kind == "chat" ? "llm.model" : "embed.encoder",
               target.string());
  return target;
}

}  // namespace llm4sbr::data
