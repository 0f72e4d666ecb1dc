// Writes that fail part-way (a full disk) during `llm4sbr run`: prepare, text encoding, intent localization,
// training checkpoints, reports and plots. Every file is capped in turn (RLIMIT_FSIZE, as `ulimit -f` does):
// each file the run leaves is then either complete or the previous good version, never a partial one; the
// error names the file and the cause; and a rerun without the fault finishes with the figures of a run that
// never failed.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "e2e/limited_process.hpp"
#include "e2e/tiny_generic_dataset.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using llm4sbr::testing::ProcessResult;
using llm4sbr::testing::run_with_file_size_limit;

namespace {

constexpr unsigned kTimeoutSeconds = 300;  // one run takes seconds; a hang is killed

// `llm4sbr run` of the plain and the enhanced SR-GNN (titles intents) on the tiny dataset, one epoch.
std::vector<std::string> run_args(const fs::path& data_dir, const fs::path& out) {
  return {LLM4SBR_CLI, "run", "--config", std::string(LLM4SBR_SOURCE_DIR) + "/configs/defaults.yaml", "--data-dir",
          data_dir.string(), "--out", out.string(), "--set", "dataset=generic", "--set", "train.epochs=1",
          "--set", "threads=1", "--set", "intent.source=titles", "--set", "data.min_item_count=2"};
}

ProcessResult run_capped(const fs::path& data_dir, const fs::path& out, std::int64_t cap,
                         const std::vector<std::string>& extra = {}) {
  auto args = run_args(data_dir, out);
  args.insert(args.end(), extra.begin(), extra.end());
  return run_with_file_size_limit(args, cap, kTimeoutSeconds, LLM4SBR_SOURCE_DIR);
}

// Every regular file under `dir`, by path relative to it.
std::map<std::string, std::string> files_under(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = llm4sbr::testing::read_text(e.path());
  return out;
}

bool ends_with(const std::string& s, std::string_view tail) { return s.size() >= tail.size() && s.ends_with(tail); }

// Files whose bytes differ from run to run (timings in every .json, weights serialized with other metadata)
// or with how many rows of the table finished (reports and plots are written after every row): they are
// checked for being whole instead of being compared with the reference run.
bool varies_between_runs(const std::string& name) {
  const auto ext = fs::path(name).extension().string();
  return ext == ".pt" || ext == ".json" || ext == ".md" || ext == ".png" || ext == ".dat" || ext == ".gp";
}

// "" if `bytes` is a whole file of its kind, else what is wrong with it.
std::string whole_file_problem(const fs::path& path, const std::string& bytes) {
  const auto ext = path.extension().string();
  if (ext == ".pt") {  // a zip archive: it ends with the end-of-central-directory record
    const auto eocd = bytes.rfind(std::string("PK\x05\x06", 4));
    return eocd != std::string::npos && eocd + 22 <= bytes.size() ? "" : "no zip end record (cut short)";
  }
  if (ext == ".json") return nlohmann::json::accept(bytes) ? "" : "not valid JSON (cut short)";
  if (ext == ".png") return ends_with(bytes, std::string("IEND\xAE\x42\x60\x82", 8)) ? "" : "no PNG end chunk";
  if (ext == ".md" || ext == ".dat" || ext == ".gp") return ends_with(bytes, "\n") ? "" : "no final newline (cut short)";
  return "";
}

// Checks that every file under `out` is whole: equal to the reference run's, or (for files that vary between
// runs) complete of its kind; and that no temporary file was left behind.
void expect_only_whole_files(const fs::path& out, const std::map<std::string, std::string>& reference,
                             const std::string& context) {
  for (const auto& [name, bytes] : files_under(out)) {
    SCOPED_TRACE(context + ": " + name);
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << "a temporary file was left behind";
    const auto ref = reference.find(name);
    if (ref == reference.end()) {
      if (name.find(".tmp") == std::string::npos) ADD_FAILURE() << "a file the reference run does not have";
      continue;
    }
    if (varies_between_runs(name)) {
      EXPECT_EQ(whole_file_problem(out / name, bytes), "") << bytes.size() << " bytes";
    } else {
      EXPECT_TRUE(bytes == ref->second) << "differs from the reference run (" << bytes.size() << " bytes, reference "
                                        << ref->second.size() << "): a partial file";
    }
  }
}

// Caps that each cut a different file short: just below the sizes of a spread of the files `pick` selects.
template <typename Pick>
std::vector<std::int64_t> caps_cutting(const std::map<std::string, std::string>& reference, std::size_t count, Pick pick) {
  std::set<std::int64_t> sizes;
  for (const auto& [name, bytes] : reference)
    if (bytes.size() > 1 && pick(name)) sizes.insert(static_cast<std::int64_t>(bytes.size()));
  const std::vector<std::int64_t> sorted(sizes.begin(), sizes.end());
  std::set<std::int64_t> caps;
  for (std::size_t k = 0; k < count && !sorted.empty(); ++k)
    caps.insert(sorted[k * (sorted.size() - 1) / std::max<std::size_t>(count - 1, 1)] - 1);
  return {caps.begin(), caps.end()};
}

double test_hr20(const fs::path& run_dir, const std::string& model) {
  const auto metrics = nlohmann::json::parse(llm4sbr::testing::read_text(run_dir / "metrics.json"));
  return metrics.at("models").at(model).at("test").at("HR@20").get<double>();
}

}  // namespace

TEST(DiskFull, RunLeavesWholeFilesOrNoneNamesTheFileAndARerunRecovers) {
  llm4sbr::testing::TempDir root;
  const auto data = llm4sbr::testing::write_tiny_generic_dataset(root / "data");
  const auto good = run_capped(data, root / "reference", -1);
  ASSERT_EQ(good.exit_code, 0) << good.output;
  const auto reference = files_under(root / "reference");
  const auto metrics = nlohmann::json::parse(reference.at("metrics.json"));
  std::vector<std::string> models;
  for (const auto& [label, _] : metrics.at("models").items()) models.push_back(label);
  ASSERT_EQ(models.size(), 2u);

  for (const auto cap : caps_cutting(reference, 4, [](const std::string&) { return true; })) {
    SCOPED_TRACE(fmt::format("files capped at {} bytes", cap));
    const auto out = root / fmt::format("cut-{}", cap);
    const auto cut = run_capped(data, out, cap);
    EXPECT_NE(cut.exit_code, 0) << "a file over the cap was written, yet the run succeeded:\n" << cut.output;
    EXPECT_NE(cut.output.find("File too large"), std::string::npos) << "the cause is not named:\n" << cut.output;
    EXPECT_NE(cut.output.find(out.string()), std::string::npos) << "no file is named:\n" << cut.output;
    expect_only_whole_files(out, reference, "after the failed run");

    // Without the fault, the same command finishes, re-using only what was whole, with the same figures.
    // (Ranks are integers and training is deterministic on one thread; the tolerance covers JSON's decimals.)
    const auto rerun = run_capped(data, out, -1);
    ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
    for (const auto& model : models) EXPECT_NEAR(test_hr20(out, model), test_hr20(root / "reference", model), 1e-9) << model;
  }
}

TEST(DiskFull, RewritingAFinishedRunKeepsEachPreviousFileWhenWritesFail) {
  llm4sbr::testing::TempDir root;
  const auto data = llm4sbr::testing::write_tiny_generic_dataset(root / "data");
  const std::vector<std::string> start_over{"--set", "resume=false"};  // the same settings in config.yaml
  ASSERT_EQ(run_capped(data, root / "reference", -1, start_over).exit_code, 0);
  const auto reference = files_under(root / "reference");
  // A second run in a finished folder told to start over (resume=false: a finished model is otherwise not
  // trained again) re-uses the stages and trains again: checkpoints, training states and reports are
  // rewritten over their previous versions, which must survive a write that fails.
  const auto rewritten = [](const std::string& name) { return !name.starts_with("stages/"); };  // not cached
  for (const auto cap : caps_cutting(reference, 3, rewritten)) {
    SCOPED_TRACE(fmt::format("files capped at {} bytes", cap));
    const auto out = root / fmt::format("again-{}", cap);
    fs::copy(root / "reference", out, fs::copy_options::recursive);
    const auto cut = run_capped(data, out, cap, start_over);
    EXPECT_NE(cut.exit_code, 0) << "a rewritten file over the cap, yet the run succeeded:\n" << cut.output;
    EXPECT_NE(cut.output.find("File too large"), std::string::npos) << cut.output;
    expect_only_whole_files(out, reference, "after the failed rewrite");
    for (const auto& [name, _] : reference) EXPECT_TRUE(fs::exists(out / name)) << name << " was lost";
  }
}
