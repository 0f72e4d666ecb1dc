// `llm4sbr run` end to end on real Beauty subsets, as a user types it: the titles intent source with a
// 2-epoch comparison table and the stage cache, and the tiny GGUF chat model through the whole pipeline.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "e2e/limited_process.hpp"
#include "llm_answers.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& file) {
  std::stringstream s;
  s << std::ifstream(file).rdbuf();
  return s.str();
}

// Runs `llm4sbr <command>` (run, ablate, compare ...) with configs/beauty.yaml on a Beauty subset of `sessions`
// users and extra flags; returns the exit code.
int experiment_cli(const std::string& command, const fs::path& out, const fs::path& log, int sessions,
                   const std::string& extra) {
  const std::string cmd = fmt::format(
      "cd '{}' && LLM4SBR_DATA_DIR='{}' '{}' {} --config configs/beauty.yaml --set data.max_sessions={} "
      "--set data.min_item_count=2 --set data.iterative_filter=true {} --out '{}' > '{}' 2>&1",
      LLM4SBR_SOURCE_DIR, llm4sbr::testing::data_dir().string(), LLM4SBR_CLI, command, sessions, extra, out.string(),
      log.string());
  return std::system(cmd.c_str());
}

int run_cli(const fs::path& out, const fs::path& log, int sessions, const std::string& extra) {
  return experiment_cli("run", out, log, sessions, extra);
}

// Runs `llm4sbr evaluate` of `checkpoint` on a prepared dataset with extra flags; returns the exit code.
int evaluate_cli(const fs::path& prepared, const fs::path& checkpoint, const std::string& extra, const fs::path& log) {
  return std::system(fmt::format("cd '{}' && '{}' evaluate --data '{}' --checkpoint '{}' {} > '{}' 2>&1", LLM4SBR_SOURCE_DIR,
                                 LLM4SBR_CLI, prepared.string(), checkpoint.string(), extra, log.string())
                         .c_str());
}

// The newest modification time of any file under `dir`.
fs::file_time_type newest_file(const fs::path& dir) {
  fs::file_time_type newest{};
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) newest = std::max(newest, e.last_write_time());
  return newest;
}

fs::path only_subdir(const fs::path& dir, const std::string& prefix) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(prefix)) return e.path();
  return {};
}

}  // namespace

TEST(EndToEnd, RunComparesSrGnnWithLlm4sbrOnTitlesIntentsAndReusesTheStages) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  llm4sbr::testing::TempDir dir;
  const auto out = dir / "run";
  ASSERT_EQ(run_cli(out, dir / "log1.txt", 600, "--set train.epochs=2 --set intent.source=titles"), 0)
      << read_all(dir / "log1.txt");

  const auto md = read_all(out / "results.md");
  EXPECT_NE(md.find("| SR-GNN |"), std::string::npos) << md;
  EXPECT_NE(md.find("| LLM4SBR(SR-GNN) [titles] |"), std::string::npos) << md;
  EXPECT_NE(md.find("| Improv. (%) |"), std::string::npos) << md;
  EXPECT_NE(md.find("LLM4SBR(SR-GNN) [titles] = titles"), std::string::npos) << "results.md says where the intents came from";
  const auto log1 = read_all(dir / "log1.txt");
  EXPECT_NE(log1.find("Improv. (%)"), std::string::npos) << log1;
  EXPECT_NE(log1.find("Intents from titles: LLM4SBR(SR-GNN) [titles]"), std::string::npos) << log1;
  EXPECT_TRUE(fs::exists(out / "curves.png"));
  auto metrics = nlohmann::json::parse(std::ifstream(out / "metrics.json"));
  ASSERT_TRUE(metrics["models"].contains("LLM4SBR(SR-GNN) [titles]"));
  EXPECT_EQ(metrics["models"]["LLM4SBR(SR-GNN) [titles]"]["epochs"].size(), 2u);
  EXPECT_EQ(metrics["models"]["LLM4SBR(SR-GNN) [titles]"]["intents"], "titles");

  // The LLM4SBR checkpoint evaluates to the run's figures with its intents, and is refused without them.
  const auto model_dir = out / "llm4sbr-sr-gnn-titles";
  const auto prepared = only_subdir(out / "stages", "prepare-");
  const auto evaluate = [&](const fs::path& checkpoint, const std::string& extra, const fs::path& log) {
    return evaluate_cli(prepared, checkpoint, extra, log);
  };
  const auto checkpoint = model_dir / "best.pt";
  ASSERT_EQ(evaluate(checkpoint, "--intents '" + only_subdir(out / "stages", "intents-").string() + "'", dir / "eval.txt"), 0)
      << read_all(dir / "eval.txt");
  const double hr20 = metrics["models"]["LLM4SBR(SR-GNN) [titles]"]["test"]["HR@20"].get<double>();
  EXPECT_NE(read_all(dir / "eval.txt").find(fmt::format(" {:.2f} ", hr20)), std::string::npos) << read_all(dir / "eval.txt");
  // The service's titles fallback computed now for every test session is the titles stage run offline.
  ASSERT_EQ(evaluate(checkpoint, "--online-intents titles", dir / "eval-titles.txt"), 0) << read_all(dir / "eval-titles.txt");
  EXPECT_NE(read_all(dir / "eval-titles.txt").find(fmt::format(" {:.2f} ", hr20)), std::string::npos)
      << read_all(dir / "eval-titles.txt");
  EXPECT_NE(read_all(dir / "eval-titles.txt").find("titles (computed now)"), std::string::npos);
  ASSERT_EQ(evaluate(checkpoint, "--online-intents none", dir / "eval-none.txt"), 0) << read_all(dir / "eval-none.txt");
  EXPECT_NE(read_all(dir / "eval-none.txt").find("LLM4SBR(SR-GNN)"), std::string::npos);
  // Without --intents, the settings and intents recorded beside the checkpoint (checkpoint.yaml) are used.
  ASSERT_EQ(evaluate(checkpoint, "", dir / "eval2.txt"), 0) << read_all(dir / "eval2.txt");
  EXPECT_NE(read_all(dir / "eval2.txt").find(fmt::format(" {:.2f} ", hr20)), std::string::npos) << read_all(dir / "eval2.txt");
  EXPECT_NE(read_all(dir / "eval2.txt").find("checkpoint.yaml"), std::string::npos) << read_all(dir / "eval2.txt");
  // A bare checkpoint file has no record: evaluated as the plain model, it is refused.
  fs::create_directories(dir / "bare");
  fs::copy_file(checkpoint, dir / "bare" / "best.pt");
  EXPECT_NE(evaluate(dir / "bare" / "best.pt", "", dir / "eval3.txt"), 0);
  EXPECT_NE(read_all(dir / "eval3.txt").find("evaluate it with --intents"), std::string::npos) << read_all(dir / "eval3.txt");
  EXPECT_NE(read_all(dir / "eval3.txt").find("no checkpoint.yaml"), std::string::npos) << read_all(dir / "eval3.txt");

  // Only a training setting changes: the prepared data, the encoder and the intents are re-used as they are.
  const auto intents_dir = only_subdir(out / "stages", "intents-");
  const auto encoder_dir = only_subdir(out / "stages", "encoder-");
  ASSERT_FALSE(intents_dir.empty());
  ASSERT_FALSE(encoder_dir.empty());
  const auto intents_time = newest_file(intents_dir);
  const auto encoder_time = newest_file(encoder_dir);
  ASSERT_EQ(run_cli(out, dir / "log2.txt", 600, "--set train.epochs=1 --set intent.source=titles --set enhance.baseline=false"), 0)
      << read_all(dir / "log2.txt");
  const auto log2 = read_all(dir / "log2.txt");
  EXPECT_NE(log1.find("SR-GNN and LLM4SBR(SR-GNN) on beauty"), std::string::npos) << log1;
  EXPECT_NE(log2.find("\nLLM4SBR(SR-GNN) on beauty"), std::string::npos) << "only LLM4SBR trained\n" << log2;
  EXPECT_NE(log2.find("prepare: re-using"), std::string::npos) << log2;
  EXPECT_NE(log2.find("intents: re-using"), std::string::npos) << log2;
  EXPECT_EQ(log2.find("fitting"), std::string::npos) << log2;
  EXPECT_EQ(newest_file(intents_dir), intents_time);
  EXPECT_EQ(newest_file(encoder_dir), encoder_time);
  EXPECT_EQ(only_subdir(out / "stages", "intents-"), intents_dir);

  // A different top-r is a different intent stage.
  ASSERT_EQ(run_cli(out, dir / "log3.txt", 600,
                    "--set train.epochs=1 --set intent.source=titles --set enhance.baseline=false --set intent.top_r=1"),
            0)
      << read_all(dir / "log3.txt");
  EXPECT_EQ(read_all(dir / "log3.txt").find("intents: re-using"), std::string::npos);
}

TEST(EndToEnd, RunWithTheTinyGgufChatModelGoesThroughEveryStage) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const fs::path model = fs::path(LLM4SBR_TINY_MODELS) / "tiny-qwen2-chat.gguf";
  ASSERT_TRUE(fs::exists(model)) << model;
  llm4sbr::testing::TempDir dir;
  const auto out = dir / "run";
  const std::string llm = fmt::format(
      "--set train.epochs=1 --set intent.source=llm --set llm.model=llama:{} --set llm.max_tokens=3 "
      "--set prompt.max_items=3",
      model.string());
  ASSERT_EQ(run_cli(out, dir / "log.txt", 150, llm), 0) << read_all(dir / "log.txt");
  const auto md = read_all(out / "results.md");
  EXPECT_NE(md.find("| LLM4SBR(SR-GNN) |"), std::string::npos) << md;
  EXPECT_NE(md.find("LLM4SBR(SR-GNN) = llm llama:"), std::string::npos) << md;

  // Every (sample, view) of every split has an answer, and a second run generates nothing.
  const auto responses = only_subdir(out / "stages", "responses-");
  ASSERT_FALSE(responses.empty());
  for (const char* split : {"train", "valid", "test"}) {
    ASSERT_TRUE(fs::exists(responses / split / "responses.jsonl")) << split;
    llm4sbr::testing::expect_real_answers(llm4sbr::testing::answers_in(responses / split / "responses.jsonl"));
  }
  EXPECT_EQ(read_all(dir / "log.txt").find("carry no information"), std::string::npos) << "the intents are not all zero";
  ASSERT_EQ(run_cli(out, dir / "log2.txt", 150, llm + " --set enhance.baseline=false"), 0) << read_all(dir / "log2.txt");
  const auto log2 = read_all(dir / "log2.txt");
  EXPECT_EQ(log2.find("prompts to generate"), std::string::npos) << log2;
  EXPECT_NE(log2.find("intents: re-using"), std::string::npos) << log2;
}

TEST(EndToEnd, WithoutAModelRunSaysSoAndUsesTitles) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  llm4sbr::testing::TempDir dir;
  ASSERT_EQ(run_cli(dir / "run", dir / "log.txt", 150,
                    "--set train.epochs=1 --set llm.model=llama:/nonexistent/model.gguf --set enhance.baseline=false"),
            0)
      << read_all(dir / "log.txt");
  const auto log = read_all(dir / "log.txt");
  EXPECT_NE(log.find("'llama:/nonexistent/model.gguf' (llm.model) is not there: using the titles intent source"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("LLM4SBR(SR-GNN) [titles]"), std::string::npos) << log;

  // Asking for the LLM explicitly with no model is an error, not a silent fallback.
  EXPECT_NE(run_cli(dir / "run2", dir / "log2.txt", 150, "--set intent.source=llm --set llm.model=llama:/nonexistent.gguf"), 0);
  EXPECT_NE(read_all(dir / "log2.txt").find("does not exist"), std::string::npos) << read_all(dir / "log2.txt");
}

TEST(EndToEnd, AblateWritesOneTableWithEveryVariant) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  llm4sbr::testing::TempDir dir;
  ASSERT_EQ(experiment_cli("ablate", dir / "run", dir / "log.txt", 150, "--set train.epochs=1 --set intent.source=titles"), 0)
      << read_all(dir / "log.txt");
  const auto md = read_all(dir / "run" / "results.md");
  for (const char* row : {"LLM4SBR", "w/o SBR", "w/o LLM", "w/o AU", "w/o long", "w/o short",
                           "normal (titles: same as w/o short)", "r=0", "r=1", "r=3"})
    EXPECT_NE(md.find(fmt::format("| {} |", row)), std::string::npos) << row << "\n" << md;
  auto metrics = nlohmann::json::parse(std::ifstream(dir / "run" / "metrics.json"));
  EXPECT_EQ(metrics["models"].size(), 10u);
  EXPECT_EQ(metrics["models"]["w/o LLM"]["intents"], "");
  EXPECT_EQ(metrics["models"]["normal (titles: same as w/o short)"]["intents"], "titles");
  EXPECT_EQ(metrics["models"]["normal (titles: same as w/o short)"]["test"], metrics["models"]["w/o short"]["test"])
      << "the titles source gives the normal view the long view's texts";
  // Views and r make their own intent stages; the rest share one.
  int intent_stages = 0;
  for (const auto& e : fs::directory_iterator(dir / "run" / "stages"))
    intent_stages += e.path().filename().string().starts_with("intents-");
  EXPECT_EQ(intent_stages, 7);  // default, short, long, normal, r=0, r=1, r=3

  // A variant's checkpoint evaluates to its row with no flags: checkpoint.yaml records enhance.without_sbr,
  // intent.top_r and the intents folder it was trained with.
  // The run folder moved as a whole still finds its intents (checkpoint.yaml holds a relative path).
  fs::rename(dir / "run", dir / "moved");
  const auto prepared = only_subdir(dir / "moved" / "stages", "prepare-");
  for (const auto& [row, folder] : {std::pair{"w/o SBR", "w-o-sbr"}, std::pair{"r=1", "r-1"}}) {
    const auto log = dir / (std::string(folder) + ".txt");
    ASSERT_EQ(evaluate_cli(prepared, dir / "moved" / folder / "best.pt", "", log), 0) << read_all(log);
    const double hr20 = metrics["models"][row]["test"]["HR@20"].get<double>();
    EXPECT_NE(read_all(log).find(fmt::format(" {:.2f} ", hr20)), std::string::npos) << row << "\n" << read_all(log);
  }
  // Another row's intents: other views are refused naming them, another r is evaluated with a warning.
  const auto intents_of = [&](const char* row) {
    return dir / "moved" / "stages" / fs::path(metrics["models"][row]["intents_dir"].get<std::string>()).filename();
  };
  const auto eval_with = [&](const char* folder, const char* row, const fs::path& log) {
    return evaluate_cli(prepared, dir / "moved" / folder / "best.pt", "--intents '" + intents_of(row).string() + "'", log);
  };
  EXPECT_NE(eval_with("w-o-long", "LLM4SBR", dir / "views.txt"), 0);
  EXPECT_NE(read_all(dir / "views.txt").find("checkpoint was trained with [short]"), std::string::npos)
      << read_all(dir / "views.txt");
  EXPECT_EQ(eval_with("r-1", "r=3", dir / "r.txt"), 0) << read_all(dir / "r.txt");
  EXPECT_NE(read_all(dir / "r.txt").find("localized with r = 3, the checkpoint was trained with r = 1"), std::string::npos)
      << read_all(dir / "r.txt");
}

TEST(EndToEnd, CompareWritesEveryModelWithItsImprovementRow) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  llm4sbr::testing::TempDir dir;
  auto compare = [&](const std::string& extra, const fs::path& log) {
    return experiment_cli("compare --models srgnn,gru4rec", dir / "run", log, 150,
                          "--set train.epochs=1 --set intent.source=titles " + extra);
  };
  // A misspelled backbone key fails before anything trains, naming the model and the key.
  ASSERT_NE(compare("--set models.gru4rec.dropout_embedd=0.1", dir / "typo.txt"), 0);
  const auto typo = read_all(dir / "typo.txt");
  EXPECT_NE(typo.find("gru4rec: unknown config key 'dropout_embedd'"), std::string::npos) << typo;
  EXPECT_EQ(typo.find("epoch 1/1"), std::string::npos) << "nothing may train before the settings are checked\n" << typo;

  // A misspelled model name under models. and a model listed twice are errors too.
  ASSERT_NE(compare("--set models.gru4rc.layers=2", dir / "typo2.txt"), 0);
  EXPECT_NE(read_all(dir / "typo2.txt").find("unknown config key 'models.gru4rc'"), std::string::npos) << read_all(dir / "typo2.txt");

  ASSERT_EQ(compare("", dir / "log.txt"), 0) << read_all(dir / "log.txt");
  const auto md = read_all(dir / "run" / "results.md");
  for (const char* row : {"| SR-GNN |", "| LLM4SBR(SR-GNN) [titles] |", "| GRU4Rec |", "| LLM4SBR(GRU4Rec) [titles] |"})
    EXPECT_NE(md.find(row), std::string::npos) << row << "\n" << md;
  // One improvement row per backbone, right after its LLM4SBR row (the validation-selected table).
  const auto table = md.substr(0, md.find("Best value"));
  std::size_t improvement_rows = 0;
  for (auto at = table.find("| Improv. (%) |"); at != std::string::npos; at = table.find("| Improv. (%) |", at + 1))
    ++improvement_rows;
  EXPECT_EQ(improvement_rows, 2u) << md;
  EXPECT_LT(table.find("| LLM4SBR(SR-GNN) [titles] |"), table.find("| Improv. (%) |")) << md;
}

// The README's Stage 1 by hand: `infer --shard i/n` on two "machines", `merge`, then LLM4SBR trained on the
// merged answers (`run --responses`, `train --responses`) and on intents made by `encode` + `localize`
// (`train --intents`); answers or intents that do not fit the prepared data are refused before training.
TEST(EndToEnd, StageOneByHandWithShardsAndMergeTrainsLlm4sbr) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const fs::path model = llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf");
  llm4sbr::testing::TempDir dir;
  const auto cli = [&](const std::string& args, const fs::path& log) {
    return llm4sbr::testing::run_logged(fmt::format("cd '{}' && LLM4SBR_DATA_DIR='{}' '{}' {}", LLM4SBR_SOURCE_DIR,
                                                    llm4sbr::testing::data_dir().string(), LLM4SBR_CLI, args),
                                        log);
  };
  const auto data = [](int sessions) {
    return fmt::format("--config configs/beauty.yaml --set data.max_sessions={} --set data.min_item_count=2 "
                       "--set data.iterative_filter=true",
                       sessions);
  };
  const std::string llm = "--set llm.max_tokens=3 --set prompt.max_items=3 --set llm.threads=2";
  const auto prepared = dir / "prepared", answers = dir / "answers", log = dir / "log.txt";
  ASSERT_EQ(cli(fmt::format("prepare {} --out '{}'", data(80), prepared.string()), log), 0) << read_all(log);
  for (const char* shard : {"1", "2"})
    ASSERT_EQ(cli(fmt::format("infer --data '{}' --split all --llm 'llama:{}' --shard {}/2 --out '{}' {}", prepared.string(),
                              model.string(), shard, (dir / "shards" / shard).string(), llm),
                  log),
              0)
        << read_all(log);
  // Merging into one of the shards is refused: its answers would be overwritten.
  const auto shard1 = llm4sbr::testing::read_text(dir / "shards/1/test/responses.jsonl");
  EXPECT_EQ(cli(fmt::format("merge --data '{}' --split all --out '{}' '{}' '{}'", prepared.string(),
                            (dir / "shards/1").string(), (dir / "shards/1").string(), (dir / "shards/2").string()),
                log),
            2);
  EXPECT_NE(read_all(log).find("is one of the shards"), std::string::npos) << read_all(log);
  EXPECT_EQ(llm4sbr::testing::read_text(dir / "shards/1/test/responses.jsonl"), shard1);
  // The shard folders come before --set, which would take them as more overrides.
  ASSERT_EQ(cli(fmt::format("merge --data '{}' --split all --out '{}' '{}' '{}' {}", prepared.string(), answers.string(),
                            (dir / "shards/1").string(), (dir / "shards/2").string(), llm),
                log),
            0)
      << read_all(log);
  for (const char* split : {"train", "valid", "test"})
    llm4sbr::testing::expect_real_answers(llm4sbr::testing::answers_in(answers / split / "responses.jsonl"));

  // run --responses: the run's own prepared data, encode and localize stages, LLM4SBR trained on the answers.
  ASSERT_EQ(run_cli(dir / "run", log, 80, llm + " --set train.epochs=1 --set enhance.baseline=false --responses '" +
                                              answers.string() + "'"),
            0)
      << read_all(log);
  EXPECT_NE(read_all(log).find("fit the prepared data"), std::string::npos) << read_all(log);
  const auto md = read_all(dir / "run" / "results.md");
  EXPECT_NE(md.find("| LLM4SBR(SR-GNN) |"), std::string::npos) << md;
  EXPECT_NE(md.find("LLM4SBR(SR-GNN) = responses " + answers.string()), std::string::npos) << md;
  EXPECT_TRUE(fs::exists(dir / "run" / "llm4sbr-sr-gnn" / "best.pt"));

  // train without Stage 1 trains the plain backbone, into the folder `run` gives it (sr-gnn/).
  ASSERT_EQ(cli(fmt::format("train --data '{}' --out '{}' --set train.epochs=1", prepared.string(), (dir / "t0").string()), log), 0)
      << read_all(log);
  EXPECT_TRUE(fs::exists(dir / "t0" / "sr-gnn" / "best.pt")) << read_all(log);

  // train --responses and train --intents on the prepared folder itself.
  ASSERT_EQ(cli(fmt::format("train --data '{}' --out '{}' {} --set train.epochs=1 --responses '{}'", prepared.string(),
                            (dir / "t1").string(), llm, answers.string()),
                log),
            0)
      << read_all(log);
  EXPECT_TRUE(fs::exists(dir / "t1" / "llm4sbr-sr-gnn" / "best.pt")) << read_all(log);
  ASSERT_EQ(cli(fmt::format("encode --data '{}' --responses '{}' --split all --out '{}'", prepared.string(), answers.string(),
                            (dir / "embedded").string()),
                log),
            0)
      << read_all(log);
  ASSERT_EQ(cli(fmt::format("localize --data '{}' --embeddings '{}' --split all --out '{}'", prepared.string(),
                            (dir / "embedded").string(), (dir / "localized").string()),
                log),
            0)
      << read_all(log);
  ASSERT_EQ(cli(fmt::format("train --data '{}' --out '{}' --set train.epochs=1 --intents '{}'", prepared.string(),
                            (dir / "t2").string(), (dir / "localized").string()),
                log),
            0)
      << read_all(log);
  EXPECT_TRUE(fs::exists(dir / "t2" / "llm4sbr-sr-gnn" / "best.pt")) << read_all(log);
  EXPECT_NE(read_all(dir / "t2" / "results.md").find("intents " + (dir / "localized").string()), std::string::npos)
      << read_all(dir / "t2" / "results.md");

  // Answers of other prepared data (fewer sessions), or of other prompt settings, are refused before anything trains.
  ASSERT_NE(run_cli(dir / "other", log, 60, llm + " --set train.epochs=1 --responses '" + answers.string() + "'"), 0);
  EXPECT_NE(read_all(log).find("records of an unexpected (sample, view)"), std::string::npos) << read_all(log);
  EXPECT_EQ(read_all(log).find("epoch 1/1"), std::string::npos) << read_all(log);
  ASSERT_NE(run_cli(dir / "other2", log, 80,
                    "--set llm.max_tokens=3 --set prompt.max_items=4 --set train.epochs=1 --responses '" + answers.string() + "'"),
            0);
  EXPECT_NE(read_all(log).find("records answering another prompt"), std::string::npos) << read_all(log);
  EXPECT_EQ(read_all(log).find("epoch 1/1"), std::string::npos) << read_all(log);
  ASSERT_EQ(cli(fmt::format("prepare {} --out '{}'", data(60), (dir / "prepared60").string()), log), 0) << read_all(log);
  ASSERT_NE(cli(fmt::format("train --data '{}' --out '{}' --set train.epochs=1 --intents '{}'", (dir / "prepared60").string(),
                            (dir / "t3").string(), (dir / "localized").string()),
                log),
            0);
  EXPECT_NE(read_all(log).find("done.json: field 'samples'"), std::string::npos) << read_all(log);
  EXPECT_NE(read_all(log).find("other prepared data"), std::string::npos) << read_all(log);
}

namespace {

// A generic dataset whose titles hold tabs, newlines, carriage returns, commas and quotes (CSV-quoted).
void write_awkward_generic_dataset(const fs::path& dir, int sessions, int items) {
  fs::create_directories(dir);
  std::ofstream titles(dir / "items.csv");
  titles << "item_id,title\n";
  const char* shapes[] = {"Lip\tstick \"\"red\"\" no. {}", "Night\ncream {}", "Soap, \"\"mild\"\"\r\n bar {}"};
  for (int k = 1; k <= items; ++k) titles << "i" << k << ",\"" << fmt::format(fmt::runtime(shapes[k % 3]), k) << "\"\n";
  std::ofstream clicks(dir / "interactions.csv");
  clicks << "session_id,item_id,timestamp\n";
  for (int s = 0; s < sessions; ++s)
    for (int j = 0; j < 5; ++j) clicks << "s" << s << ",i" << (s * 7 + j * 3) % items + 1 << "," << s * 1000 + j << "\n";
}

// Every line of every responses.jsonl under the responses stages of a run folder.
std::size_t response_lines(const fs::path& run) {
  std::size_t n = 0;
  if (!fs::exists(run / "stages")) return 0;
  for (const auto& e : fs::recursive_directory_iterator(run / "stages"))
    if (e.path().filename() == "responses.jsonl") n += llm4sbr::testing::read_jsonl(e.path()).size();
  return n;
}

}  // namespace

// A run killed during Stage 1 and started again resumes with the same prompts, even when titles hold tabs,
// newlines and quotes (the resumed run reads them back from items.tsv): no answer is generated twice.
TEST(EndToEnd, RunKilledInStageOneResumesWithOneRecordPerPromptWhenTitlesHoldTabsAndNewlines) {
  llm4sbr::testing::TempDir dir;
  write_awkward_generic_dataset(dir / "data" / "generic", 80, 30);
  const auto out = dir / "run";
  const std::string command = fmt::format(
      "cd '{}' && LLM4SBR_DATA_DIR='{}' exec '{}' run --config configs/defaults.yaml --set dataset=generic "
      "--set intent.source=llm --set llm.model=llama:{} --set llm.max_tokens=4 --set llm.parallel=2 --set llm.threads=2 "
      "--set train.epochs=1 --set enhance.baseline=false --out '{}'",
      LLM4SBR_SOURCE_DIR, (dir / "data").string(), LLM4SBR_CLI, llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf").string(),
      out.string());

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", (command + " > /dev/null 2>&1").c_str(), nullptr);
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  std::size_t seen = 0;
  while (std::chrono::steady_clock::now() < deadline && (seen = response_lines(out)) < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(-pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_GE(seen, 30u) << "no answers appeared before the deadline";
  ASSERT_FALSE(fs::exists(out / "results.md")) << "the run finished before it could be killed; nothing was tested";

  const auto log = dir / "log.txt";
  ASSERT_EQ(llm4sbr::testing::run_logged(command, log), 0) << read_all(log);
  EXPECT_NE(read_all(log).find("prepare: re-using"), std::string::npos) << "the resumed run reads items.tsv back";
  const auto responses = only_subdir(out / "stages", "responses-");
  const auto prepared = only_subdir(out / "stages", "prepare-");
  for (const char* split : {"train", "valid", "test"}) {
    std::size_t samples = 0;
    std::ifstream in(prepared / (std::string(split) + ".tsv"));
    for (std::string line; std::getline(in, line);) samples += !line.empty();
    const auto records = llm4sbr::testing::read_jsonl(responses / split / "responses.jsonl");
    std::map<std::pair<std::int64_t, std::string>, int> per_key;
    for (const auto& r : records) ++per_key[{r["sample"].get<std::int64_t>(), r["view"].get<std::string>()}];
    EXPECT_EQ(per_key.size(), 2 * samples) << split;
    EXPECT_EQ(records.size(), per_key.size()) << split << ": a (sample, view) has two records";
    llm4sbr::testing::expect_real_answers(llm4sbr::testing::answers_in(responses / split / "responses.jsonl"));
  }
}

// A usage error (a missing folder, an unknown option or command) exits 2 with CLI11's message, like every
// other bad input; --help exits 0.
TEST(EndToEnd, UsageErrorsExitTwoAndHelpExitsZero) {
  const auto cli = [](const std::vector<std::string>& args) {
    std::vector<std::string> argv{LLM4SBR_CLI};
    argv.insert(argv.end(), args.begin(), args.end());
    return llm4sbr::testing::run_with_file_size_limit(argv, -1, 60, LLM4SBR_SOURCE_DIR);
  };
  const auto missing = cli({"train", "--data", "/nonexistent/prepared", "--out", "/tmp/unused"});
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("/nonexistent/prepared"), std::string::npos) << missing.output;
  EXPECT_EQ(cli({"run", "--no-such-option"}).exit_code, 2);
  EXPECT_EQ(cli({"no-such-command"}).exit_code, 2);
  const auto help = cli({"run", "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_NE(help.output.find("--config"), std::string::npos) << help.output;
}

// From outside the checkout there is no configs/ folder: `prepare --dataset ml-100k` made per-user sessions
// with every prefix a sample instead of the configured 10-minute sessions, and said nothing.
TEST(EndToEnd, PrepareFromOutsideTheCheckoutSaysTheDatasetConfigIsNotRead) {
  llm4sbr::testing::TempDir dir;
  const auto run = llm4sbr::testing::run_with_file_size_limit(
      {LLM4SBR_CLI, "prepare", "--dataset", "ml-100k", "--out", (dir / "prepared").string()}, -1, 120,
      dir.path().string(), {"LLM4SBR_DATA_DIR=" + std::filesystem::absolute(llm4sbr::testing::data_dir()).string()});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("configs/ml-100k.yaml is not read: there is no configs/ folder here"), std::string::npos)
      << run.output;
}
