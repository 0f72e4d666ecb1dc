// Data-parallel training (issue 14) with real processes on 127.0.0.1: `train --nproc 2` against one process,
// ranks started by hand with torchrun's variables and a store hosted as torchrun's agent hosts it,
// a rank killed mid-epoch, and a killed job resumed. Every process a test starts dies with it (PDEATHSIG) and
// is killed after kTimeoutSeconds.
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>


#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "e2e/checkpoint_tensors.hpp"
#include "e2e/background_process.hpp"
#include "e2e/limited_process.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using llm4sbr::testing::checkpoint_tensors;
using llm4sbr::testing::ProcessResult;
using llm4sbr::testing::Started;

namespace {

constexpr unsigned kTimeoutSeconds = 300;

std::vector<std::string> train_args(const fs::path& prepared, const fs::path& out, int epochs) {
  return {LLM4SBR_CLI, "train", "--data", prepared.string(), "--out", out.string(), "--set", "train.epochs=" + std::to_string(epochs),
          "--set", "threads=1", "--set", "train.batch_size=100"};
}

ProcessResult run(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  return llm4sbr::testing::run_with_file_size_limit(args, -1, kTimeoutSeconds, LLM4SBR_SOURCE_DIR, env);
}

Started start(const std::vector<std::string>& args, const std::vector<std::string>& env, const fs::path& log) {
  return llm4sbr::testing::start_process(args, env, log, kTimeoutSeconds, LLM4SBR_SOURCE_DIR);
}

// The store torchrun's agent hosts for its workers, here on a port the kernel picks.
c10::intrusive_ptr<c10d::TCPStore> agent_store() {
  c10d::TCPStoreOptions options;
  options.port = 0;
  options.isServer = true;
  options.waitWorkers = false;
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
}

// torchrun's variables for rank `rank` of 2 on this machine, meeting in `store` (TORCHELASTIC_USE_AGENT_STORE).
std::vector<std::string> rank_env(int rank, const c10d::TCPStore& store) {
  return {"RANK=" + std::to_string(rank), "LOCAL_RANK=" + std::to_string(rank), "WORLD_SIZE=2", "LOCAL_WORLD_SIZE=2",
          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(store.getPort()), "TORCHELASTIC_USE_AGENT_STORE=True"};
}

// The largest difference between the tensors of two checkpoints of the same model.
double max_difference(const fs::path& a, const fs::path& b) {
  const auto wa = checkpoint_tensors(a), wb = checkpoint_tensors(b);
  EXPECT_EQ(wa.size(), wb.size());
  double worst = 0;
  for (const auto& [key, t] : wa) worst = std::max(worst, (t - wb.at(key)).abs().max().item<double>());
  return worst;
}

class Distributed : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new llm4sbr::testing::TempDir;
    const auto prep = run({LLM4SBR_CLI, "prepare", "--config", "configs/beauty.yaml", "--out", prepared().string(),
                           "--set", "data.max_sessions=1500", "--set", "data.min_item_count=3", "--set",
                           "data.iterative_filter=true"});
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
    const auto one = run(train_args(prepared(), *dir_ / "one", 1));
    ASSERT_EQ(one.exit_code, 0) << one.output;
    auto args = train_args(prepared(), *dir_ / "two", 1);
    args.insert(args.end(), {"--nproc", "2"});
    two_ = new ProcessResult(run(args));
  }
  static void TearDownTestSuite() {
    delete two_;
    delete dir_;
  }
  static fs::path prepared() { return *dir_ / "prepared"; }

  static llm4sbr::testing::TempDir* dir_;
  static ProcessResult* two_;  // train --nproc 2, one epoch
};

llm4sbr::testing::TempDir* Distributed::dir_ = nullptr;
ProcessResult* Distributed::two_ = nullptr;

// The same global batch and seed: each rank computes half of every batch and the gradients are summed, so the
// weights after an epoch (43 Adam steps) equal one process's up to float rounding (the sum of two half-batch
// gradients is rounded differently from one whole-batch product). Adam divides by the root of the second
// moment, which can magnify that rounding in tiny gradients; the bound 1e-4 on weights of order 0.1 leaves
// room for other BLAS kernels. Measured on an AMD EPYC (OpenBLAS Haswell kernels): identical.
TEST_F(Distributed, TwoRanksMatchOneProcessAfterAnEpoch) {
  ASSERT_EQ(two_->exit_code, 0) << two_->output;
  EXPECT_NE(two_->output.find("launching 2 ranks"), std::string::npos) << two_->output;
  EXPECT_NE(two_->output.find("[rank 0] info SR-GNN epoch 1: all-reduce"), std::string::npos) << two_->output;
  EXPECT_EQ(two_->output.find("[rank 1] info"), std::string::npos) << "rank 1 logs only warnings:\n" << two_->output;
  const double worst = max_difference(*dir_ / "one" / "sr-gnn" / "last.pt", *dir_ / "two" / "sr-gnn" / "last.pt");
  EXPECT_LT(worst, 1e-4);
  std::cout << "largest weight difference, 2 ranks vs 1 process after an epoch: " << worst << "\n";
  EXPECT_TRUE(fs::exists(*dir_ / "two" / "metrics.json"));
  EXPECT_TRUE(fs::exists(*dir_ / "two" / "sr-gnn" / "best.pt"));
}

// torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True): rank 0 joins it as a client. Two ranks
// started by hand that way train exactly as --nproc 2, whose rank 0 hosts the store (the same arithmetic in
// the same order).
TEST_F(Distributed, RanksMeetInAnAgentHostedStoreAsUnderTorchrun) {
  ASSERT_EQ(two_->exit_code, 0) << two_->output;
  const auto store = agent_store();
  const auto out = *dir_ / "agent";
  std::vector<Started> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.push_back(start(train_args(prepared(), out, 1), rank_env(r, *store), *dir_ / ("agent-" + std::to_string(r) + ".log")));
  for (const auto& r : ranks) {
    const auto f = llm4sbr::testing::wait_process(r);
    EXPECT_EQ(f.result.exit_code, 0) << f.result.output;
  }
  EXPECT_EQ(max_difference(*dir_ / "two" / "sr-gnn" / "last.pt", out / "sr-gnn" / "last.pt"), 0.0);
}

// A rank killed mid-epoch: its peer fails at its next all-reduce with an error that says what happened, in
// seconds, not after the collective timeout (30 minutes by default).
TEST_F(Distributed, ARankKilledMidEpochMakesTheOtherFailAtOnce) {
  const auto store = agent_store();
  auto env1 = rank_env(1, *store);
  env1.push_back("LLM4SBR_KILL_AT=train:1:10@1");
  const auto out = *dir_ / "killed-rank";
  auto rank0 = start(train_args(prepared(), out, 1), rank_env(0, *store), *dir_ / "killed-0.log");
  auto rank1 = start(train_args(prepared(), out, 1), env1, *dir_ / "killed-1.log");
  const auto f1 = llm4sbr::testing::wait_process(rank1);
  EXPECT_EQ(f1.result.signal, SIGKILL) << f1.result.output;
  const auto f0 = llm4sbr::testing::wait_process(rank0);
  EXPECT_EQ(f0.result.exit_code, 2) << f0.result.output;
  EXPECT_LT(f0.seconds - f1.seconds, 30.0) << f0.result.output;
  EXPECT_NE(f0.result.output.find("rank 0 of 2: all-reduce failed"), std::string::npos) << f0.result.output;
  EXPECT_NE(f0.result.output.find("resumes from the last finished epoch"), std::string::npos) << f0.result.output;
}

// A job whose rank 1 is killed during epoch 2: the launcher stops it and names the rank; the same command run
// again resumes from epoch 1's state and ends exactly as an uninterrupted 2-rank job.
TEST_F(Distributed, AKilledJobRunAgainResumesAndEndsAsTheUninterruptedJob) {
  auto args = [&](const fs::path& out) {
    auto a = train_args(prepared(), out, 2);
    a.insert(a.end(), {"--nproc", "2"});
    return a;
  };
  const auto whole = run(args(*dir_ / "whole2"));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  const auto out = *dir_ / "resumed2";
  const auto killed = run(args(out), {"LLM4SBR_KILL_AT=train:2:5@1"});
  EXPECT_EQ(killed.exit_code, 2) << killed.output;
  EXPECT_NE(killed.output.find("rank 1 of 2 was the first to stop: it was killed by signal 9"), std::string::npos) << killed.output;
  const auto again = run(args(out));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("resuming from"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("SR-GNN epoch 1: loss"), std::string::npos) << "epoch 1 trained again:\n" << again.output;
  for (const auto* file : {"best.pt", "last.pt"})
    EXPECT_EQ(max_difference(*dir_ / "whole2" / "sr-gnn" / file, out / "sr-gnn" / file), 0.0) << file;
}

// Rank 0 reads the state and sends it to every rank: a truncated one is refused by the job, naming the file.
TEST_F(Distributed, ACorruptStateIsRefusedNamingTheFile) {
  const auto out = *dir_ / "corrupt";
  auto a = train_args(prepared(), out, 2);
  a.insert(a.end(), {"--nproc", "2"});
  ASSERT_EQ(run(a, {"LLM4SBR_KILL_AT=train:2:1@0"}).exit_code, 2);
  const auto state = out / "sr-gnn" / "state.pt";
  ASSERT_TRUE(fs::exists(state));
  fs::resize_file(state, fs::file_size(state) / 2);
  const auto again = run(a);
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find(state.string() + ": not a readable training state"), std::string::npos) << again.output;
}

// Ranks started with other settings compare them when they meet and refuse to train, quoting the setting.
TEST_F(Distributed, RanksWithDifferentSettingsRefuseToStart) {
  const auto store = agent_store();
  auto other = train_args(prepared(), *dir_ / "mixed", 1);
  other.back() = "train.batch_size=50";
  auto rank0 = start(train_args(prepared(), *dir_ / "mixed", 1), rank_env(0, *store), *dir_ / "mixed-0.log");
  auto rank1 = start(other, rank_env(1, *store), *dir_ / "mixed-1.log");
  const auto f0 = llm4sbr::testing::wait_process(rank0), f1 = llm4sbr::testing::wait_process(rank1);
  EXPECT_EQ(f0.result.exit_code, 2) << f0.result.output;
  EXPECT_EQ(f1.result.exit_code, 2) << f1.result.output;
  EXPECT_NE(f0.result.output.find("have different settings: '  batch_size: 100' here, '  batch_size: 50' there"),
            std::string::npos)
      << f0.result.output;
  EXPECT_FALSE(fs::exists(*dir_ / "mixed" / "sr-gnn" / "last.pt"));
}

// Ctrl-C (SIGINT to the launcher) stops every rank; it is not a failure: exit 130, and the advice to resume.
TEST_F(Distributed, AnInterruptedJobStopsEveryRankAndSaysHowToResume) {
  auto args = train_args(prepared(), *dir_ / "interrupted", 3);
  args.insert(args.end(), {"--nproc", "2"});
  auto launcher = start(args, {}, *dir_ / "interrupted.log");
  for (int i = 0; i < 600 && llm4sbr::testing::read_text(*dir_ / "interrupted.log").find("train: SR-GNN") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(::kill(launcher.pid, SIGINT), 0);
  const auto f = llm4sbr::testing::wait_process(launcher);
  EXPECT_EQ(f.result.exit_code, 130) << f.result.output;
  EXPECT_NE(f.result.output.find("run the same command again to resume"), std::string::npos) << f.result.output;
  EXPECT_EQ(f.result.output.find("the training job failed"), std::string::npos) << f.result.output;
}

TEST_F(Distributed, AJobWithoutItsRendezvousIsAClearError) {
  const auto alone = run(train_args(prepared(), *dir_ / "alone", 1), {"RANK=1"});
  EXPECT_EQ(alone.exit_code, 2) << alone.output;
  EXPECT_NE(alone.output.find("$RANK = 1 but $WORLD_SIZE is not set"), std::string::npos) << alone.output;
  const auto r = run(train_args(prepared(), *dir_ / "no-master", 1), {"WORLD_SIZE=2", "RANK=1"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("$MASTER_ADDR is not set"), std::string::npos) << r.output;
  auto nested = train_args(prepared(), *dir_ / "nested", 1);
  nested.insert(nested.end(), {"--nproc", "2"});
  const auto both = run(nested, {"WORLD_SIZE=2", "RANK=0"});
  EXPECT_EQ(both.exit_code, 2) << both.output;
  EXPECT_NE(both.output.find("either with --nproc or with torchrun"), std::string::npos) << both.output;
}

}  // namespace
