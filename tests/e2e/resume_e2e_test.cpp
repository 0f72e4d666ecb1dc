// Resume: a Beauty-subset training killed with SIGKILL during an epoch, during evaluation or while its state is
// written, and run again into the same folder, ends exactly (bit for bit, on the CPU) as the uninterrupted run:
// the same metrics of every epoch and the same weights. A corrupted state is refused naming the file, and a
// finished run is not trained again.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "e2e/background_process.hpp"
#include "e2e/checkpoint_tensors.hpp"
#include "e2e/limited_process.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using llm4sbr::testing::checkpoint_tensors;
using llm4sbr::testing::ProcessResult;
using llm4sbr::testing::run_with_file_size_limit;

namespace {

constexpr unsigned kTimeoutSeconds = 300;

ProcessResult cli(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  args.insert(args.begin(), LLM4SBR_CLI);
  return run_with_file_size_limit(args, -1, kTimeoutSeconds, LLM4SBR_SOURCE_DIR, env);
}

// GRU4Rec, whose dropout draws from the CPU generator: its state must be restored too.
std::vector<std::string> train_args(const fs::path& prepared, const fs::path& out) {
  return {"train", "--data", prepared.string(), "--out", out.string(), "--set", "model=gru4rec", "--set",
          "train.epochs=3", "--set", "threads=1", "--set", "train.batch_size=64"};
}

ProcessResult train(const fs::path& prepared, const fs::path& out, const std::vector<std::string>& env = {}) {
  return cli(train_args(prepared, out), env);
}

nlohmann::json metrics(const fs::path& out) {
  auto j = nlohmann::json::parse(llm4sbr::testing::read_text(out / "metrics.json"));
  auto model = j.at("models").at("GRU4Rec");
  model.erase("checkpoint_dir");  // the run's own folder
  for (auto& e : model.at("epochs")) e.erase("train_seconds"), e.erase("eval_seconds"), e.erase("train_samples_per_second");
  return model;
}

class Resume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new llm4sbr::testing::TempDir;
    const auto prep = cli({"prepare", "--config", "configs/beauty.yaml", "--out", prepared().string(), "--set",
                           "data.max_sessions=1500", "--set", "data.min_item_count=3", "--set", "data.iterative_filter=true"});
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
    const auto whole = train(prepared(), reference());
    ASSERT_EQ(whole.exit_code, 0) << whole.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path prepared() { return *dir_ / "prepared"; }
  static fs::path reference() { return *dir_ / "whole"; }

  // Killed at `point`, then run again: the same metrics and weights as the uninterrupted run, and no
  // temporary file of the killed write left. Killed before any state was whole, the run starts over.
  static void expect_resumes_exactly(const std::string& point, bool from_a_state = true) {
    SCOPED_TRACE(point);
    const auto out = *dir_ / ("killed-" + point);
    const auto killed = train(prepared(), out, {"LLM4SBR_KILL_AT=" + point});
    ASSERT_EQ(killed.signal, SIGKILL) << "not killed at " << point << ":\n" << killed.output;
    const auto again = train(prepared(), out);
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(again.output.find("resuming from") != std::string::npos, from_a_state) << again.output;
    EXPECT_EQ(metrics(out), metrics(reference()));
    for (const auto& e : fs::recursive_directory_iterator(out))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
    for (const auto* file : {"best.pt", "last.pt"}) {
      const auto want = checkpoint_tensors(reference() / "gru4rec" / file), got = checkpoint_tensors(out / "gru4rec" / file);
      ASSERT_EQ(got.size(), want.size()) << file;
      for (const auto& [key, tensor] : want) EXPECT_TRUE(torch::equal(got.at(key), tensor)) << file << " " << key;
    }
  }

  static llm4sbr::testing::TempDir* dir_;
};

llm4sbr::testing::TempDir* Resume::dir_ = nullptr;

TEST_F(Resume, KilledDuringAnEpochEndsAsTheUninterruptedRun) { expect_resumes_exactly("train:2:7"); }
TEST_F(Resume, KilledDuringEvaluationEndsAsTheUninterruptedRun) { expect_resumes_exactly("eval:2"); }
TEST_F(Resume, KilledWhileTheStateIsWrittenEndsAsTheUninterruptedRun) {
  expect_resumes_exactly("state:1", /*from_a_state=*/false);
  expect_resumes_exactly("state:3");
}

// Ctrl-C in the middle of training: a line that says to run again, the process ends by SIGINT, and the same
// command then ends as the uninterrupted run (from the last finished epoch, or from scratch if none was).
TEST_F(Resume, CtrlCSaysToRunAgainAndTheRunEndsAsTheUninterruptedOne) {
  const auto out = *dir_ / "interrupted";
  auto args = train_args(prepared(), out);
  args.insert(args.begin(), LLM4SBR_CLI);
  const auto started = llm4sbr::testing::start_process(args, {}, *dir_ / "interrupted.log", 600, LLM4SBR_SOURCE_DIR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (llm4sbr::testing::read_text(started.log).find("GRU4Rec epoch 1: loss") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(started.pid, SIGINT);
  const auto interrupted = llm4sbr::testing::wait_process(started);
  EXPECT_EQ(interrupted.result.signal, SIGINT) << interrupted.result.output;
  EXPECT_NE(interrupted.result.output.find("interrupted: the finished work is kept; run the same command again"),
            std::string::npos)
      << interrupted.result.output;
  const auto again = train(prepared(), out);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(metrics(out), metrics(reference()));
}

TEST_F(Resume, AFinishedRunIsNotTrainedAgain) {
  const auto before = metrics(reference());
  const auto again = train(prepared(), reference());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("GRU4Rec: already trained (3 epoch(s)"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("resuming from"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("GRU4Rec epoch 3: loss"), std::string::npos) << "trained again:\n" << again.output;
  EXPECT_EQ(metrics(reference()), before);
}

TEST_F(Resume, ACorruptStateIsRefusedNamingTheFile) {
  const auto out = *dir_ / "corrupt";
  ASSERT_EQ(train(prepared(), out, {"LLM4SBR_KILL_AT=train:2:1"}).signal, SIGKILL);
  const auto state = out / "gru4rec" / "state.pt";
  ASSERT_TRUE(fs::exists(state));
  fs::resize_file(state, fs::file_size(state) / 2);
  const auto again = train(prepared(), out);
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find(state.string()), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("not a readable training state"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("frame #"), std::string::npos) << "LibTorch's C++ stack in the message:\n" << again.output;
}

// Another batch size is another training. Killed before its first epoch ends, it leaves checkpoint.yaml
// describing the best.pt beside it (the previous training's), not the settings of the one that was killed.
TEST_F(Resume, OtherSettingsTrainFromScratch) {
  const auto out = *dir_ / "other";
  ASSERT_EQ(train(prepared(), out, {"LLM4SBR_KILL_AT=eval:2"}).signal, SIGKILL);
  const auto record = out / "gru4rec" / "checkpoint.yaml";
  ASSERT_NE(llm4sbr::testing::read_text(record).find("batch_size: 64"), std::string::npos);
  const std::vector<std::string> other{"train", "--data", prepared().string(), "--out", out.string(), "--set",
                                       "model=gru4rec", "--set", "train.epochs=1", "--set", "threads=1", "--set",
                                       "train.batch_size=32"};
  const auto killed = cli(other, {"LLM4SBR_KILL_AT=train:1:3"});
  ASSERT_EQ(killed.signal, SIGKILL) << killed.output;
  EXPECT_NE(llm4sbr::testing::read_text(record).find("batch_size: 64"), std::string::npos)
      << "checkpoint.yaml no longer describes best.pt:\n" << llm4sbr::testing::read_text(record);
  const auto again = cli(other);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("other settings: training from scratch"), std::string::npos) << again.output;
  EXPECT_NE(llm4sbr::testing::read_text(record).find("batch_size: 32"), std::string::npos);
}

// Settings of other stages (prompts, the LLM) and evaluation's batch size do not make a finished plain
// model train again.
TEST_F(Resume, SettingsThatDoNotShapeTheModelKeepIt) {
  const auto again = cli({"train", "--data", prepared().string(), "--out", reference().string(), "--set",
                          "model=gru4rec", "--set", "train.epochs=3", "--set", "threads=1", "--set",
                          "train.batch_size=64", "--set", "prompt.header=hello", "--set", "llm.max_tokens=7",
                          "--set", "train.eval_batch_size=200"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("already trained"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("GRU4Rec epoch 1: loss"), std::string::npos) << "trained again:\n" << again.output;
}

}  // namespace
