#include "llm4sbr/train/checkpoint.hpp"
#include "llm4sbr/train/device.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <map>
#include <set>
#include <sstream>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/intent/intents.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/train/build.hpp"

namespace llm4sbr::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kRecordFile = "checkpoint.yaml";
// The sections that define a trained model's shape and inputs (prompt: the questions behind its intents, which
// the service asks again to find the run's answers); evaluation settings (eval.*) stay the caller's.
constexpr const char* kModelSections[] = {"model", "models", "enhance", "intent", "prompt"};
// The recorded folders, by their key in checkpoint.yaml.
constexpr const char* kPreparedKey = "prepared_dir";
constexpr const char* kEncoderKey = "encoder_dir";
constexpr const char* kIntentsKey = "intents_dir";
constexpr const char* kResponsesKey = "responses_dir";

// A folder as the record keeps it: relative to the run folder, so that a moved run folder still loads.
std::string relative_to(const fs::path& dir, const fs::path& run_dir) {
  return dir.empty() ? "" : fs::relative(fs::absolute(dir), fs::absolute(run_dir)).string();
}

// A recorded folder back as a path: relative ones from the checkpoint's folder (older records may hold
// absolute paths).
fs::path resolved(const Config& record, const char* key, const fs::path& checkpoint_dir) {
  const auto recorded = record.get<std::string>(key, "");
  if (recorded.empty()) return {};
  return fs::path(recorded).is_absolute() ? fs::path(recorded) : checkpoint_dir / recorded;
}

// The caller's settings with the model-defining sections of the record, warning about a given section
// the record overrides.
Config merged_settings(const Config& given, const CheckpointRecord& record) {
  Config out(YAML::Clone(given.root()));
  YAML::Node root = out.root();  // a handle to out's tree
  for (const char* section : kModelSections) {
    if (section != std::string("models") && out.has(section) && record.config.canonical(section) != out.canonical(section))
      spdlog::warn("load: {}.* comes from {}; the given config's values are not used", section, record.file.string());
    root.remove(section);
    if (const YAML::Node node = record.config.node(section); node && !node.IsNull()) out.set_node(section, YAML::Clone(node));
  }
  return out;
}

// The first finished split of an intents folder: its done.json says the views, width and top-r.
std::pair<fs::path, nlohmann::json> finished_split(const fs::path& intents_dir) {
  for (const char* split : {"train", "valid", "test"})
    if (auto done = intent::intents_done(intents_dir / split)) return {intents_dir / split, *done};
  throw InputError((intents_dir / "test" / "done.json").string(), 0, "",
                   "no finished split of intents in this folder (an intents-<key> folder of the run's stages?)");
}

// Intents from another row (LoadOptions::intents): other views cannot feed the checkpoint's gates; another r
// can, but the numbers are then not the row's.
void check_intents_fit_checkpoint(const Config& cfg, const std::vector<std::string>& views, std::int64_t r,
                                  const fs::path& split_dir) {
  const auto trained_views = cfg.get<std::vector<std::string>>("intent.views", {"long", "short"});
  if (views != trained_views)
    throw InputError((split_dir / "done.json").string(), 0, "views",
                     fmt::format("these intents have views [{}], the checkpoint was trained with [{}] (its "
                                 "checkpoint.yaml): pass the intents of its own run, or none",
                                 fmt::join(views, ", "), fmt::join(trained_views, ", ")));
  const auto trained_r = cfg.get<std::int64_t>("intent.top_r", 5);
  if (r >= 0 && r != trained_r)
    spdlog::warn("load: the intents were localized with r = {}, the checkpoint was trained with r = {}", r, trained_r);
}

// The prepared data: the caller's, else the recorded folder.
std::shared_ptr<const data::PreparedDataset> dataset_of(const LoadOptions& options, const std::optional<CheckpointRecord>& record,
                                                        const fs::path& checkpoint) {
  if (options.dataset) return options.dataset;
  if (!record || record->inputs.prepared.empty())
    throw InputError(checkpoint.string(), 0, kPreparedKey,
                     "no prepared data is recorded for this checkpoint (trained before checkpoint.yaml kept it?): "
                     "pass the prepared dataset");
  if (!data::is_prepared(record->inputs.prepared))
    throw InputError(record->file.string(), 0, kPreparedKey,
                     fmt::format("the prepared data this checkpoint was trained on ({}) is not there",
                                 record->inputs.prepared.string()));
  return std::make_shared<const data::PreparedDataset>(data::read_prepared(record->inputs.prepared));
}

// The recorded text encoder and the catalogue embedded with it, when the model has intents.
void load_text_side(TrainedModel& out, const std::optional<CheckpointRecord>& record) {
  if (!record || record->inputs.encoder.empty()) {
    spdlog::warn("load: no text encoder is recorded for this checkpoint: new sessions cannot be given intents");
    return;
  }
  if (!fs::exists(record->inputs.encoder / "encoder.json"))
    throw InputError(record->file.string(), 0, kEncoderKey,
                     fmt::format("the text encoder of this checkpoint's intents ({}) is not there",
                                 record->inputs.encoder.string()));
  out.encoder = embed::load_text_encoder(record->inputs.encoder);
  out.catalogue = intent::catalogue_embeddings(*out.dataset, *out.encoder);
}

}  // namespace

void save_checkpoint(torch::nn::Module& model, const fs::path& file) {
  torch::serialize::OutputArchive archive;
  model.save(archive);
  // Serialized in memory, then written through AtomicFile: LibTorch's own file writer reports a full disk
  // without the file's name or the cause and leaves its temporary file behind, and an error thrown from a
  // writer callback would escape through the archive writer's destructor.
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomically(file, bytes.str());
}

void load_checkpoint(torch::nn::Module& model, const fs::path& file) {
  if (!fs::exists(file)) throw InputError(file.string(), 0, "", "checkpoint not found");
  // LibTorch's load replaces tensors whatever their shape, so a checkpoint of another catalogue would load
  // "fine" and then score the wrong items: compare every shape with the model built for this dataset.
  std::map<std::string, std::vector<std::int64_t>> want;
  for (const auto& p : model.named_parameters()) want[p.key()] = p.value().sizes().vec();
  torch::serialize::InputArchive archive;
  try {
    // Onto the model's device, whatever device saved it: a GPU checkpoint evaluates on a CPU-only machine.
    archive.load_from(file.string(), device_of(model));
  } catch (const c10::Error& e) {
    throw InputError(file.string(), 0, "",
                     fmt::format("not a readable LibTorch checkpoint: the file is truncated or corrupt ({} bytes; an "
                                 "interrupted copy?). Train again, or use an intact copy ({})",
                                 fs::file_size(file), e.what_without_backtrace()));
  }
  try {
    // LibTorch ignores what the model does not ask for: an LLM4SBR checkpoint would load into the plain
    // backbone without a word and be evaluated without its head. Refuse entries the model does not have.
    std::set<std::string> own;
    for (const auto& p : model.named_parameters(false)) own.insert(p.key());
    for (const auto& b : model.named_buffers(false)) own.insert(b.key());
    for (const auto& c : model.named_children()) own.insert(c.key());
    for (const auto& key : archive.keys())
      if (!own.count(key))
        throw InputError(file.string(), 0, key,
                         fmt::format("the checkpoint holds '{}', which this model ({}) does not have: was it trained with "
                                     "another model, or with the LLM4SBR head (then evaluate it with --intents)?",
                                     key, fmt::join(own, ", ")));
    model.load(archive);
  } catch (const c10::Error& e) {
    throw InputError(file.string(), 0, "", std::string("checkpoint does not match the model: ") + e.what_without_backtrace());
  }
  for (const auto& p : model.named_parameters()) {
    const auto got = p.value().sizes().vec();
    if (got != want[p.key()])
      throw InputError(file.string(), 0, p.key(),
                       fmt::format("checkpoint has shape [{}] but the model for this dataset and config needs [{}] "
                                   "(was it trained on another dataset, catalogue or model setting?)",
                                   fmt::join(got, ", "), fmt::join(want[p.key()], ", ")));
  }
}

void record_checkpoint(const Config& cfg, const fs::path& run_dir, const TrainedInputs& inputs) {
  fs::create_directories(run_dir);
  YAML::Node doc(YAML::NodeType::Map);
  doc[kPreparedKey] = relative_to(inputs.prepared, run_dir);
  doc[kEncoderKey] = relative_to(inputs.encoder, run_dir);
  doc[kIntentsKey] = relative_to(inputs.intents, run_dir);
  doc[kResponsesKey] = relative_to(inputs.responses, run_dir);
  Config recorded(YAML::Clone(cfg.root()));
  // The backbone's settings as merged at training time, so that editing configs/models/ later changes nothing.
  const auto model = cfg.require<std::string>("model");
  recorded.set_node("models", YAML::Node(YAML::NodeType::Map));
  recorded.set_node("models." + model, model_settings(cfg).root());
  doc["config"] = recorded.root();
  YAML::Emitter out;
  out << doc;
  write_file_atomically(run_dir / kRecordFile, std::string(out.c_str()) + "\n");
}

std::optional<CheckpointRecord> read_checkpoint_record(const fs::path& checkpoint) {
  const fs::path file = checkpoint.parent_path() / kRecordFile;
  if (!fs::exists(file)) return std::nullopt;
  const Config doc = Config::load(file);
  const fs::path dir = checkpoint.parent_path();
  return CheckpointRecord{file, doc.sub("config"),
                          {resolved(doc, kPreparedKey, dir), resolved(doc, kEncoderKey, dir), resolved(doc, kIntentsKey, dir),
                           resolved(doc, kResponsesKey, dir)}};
}

torch::Tensor TrainedModel::intents(const std::string& split) const {
  if (intents_dir.empty()) return {};
  return intent::read_intents(intents_dir / split).to(device_of(*model));
}

TrainedModel load_trained(const fs::path& checkpoint, const torch::Device& device, LoadOptions options) {
  TrainedModel out;
  const auto record = read_checkpoint_record(checkpoint);
  out.recorded = record.has_value();
  if (record) {
    out.config = merged_settings(options.config, *record);
  } else {
    spdlog::warn("load: no {} beside {}: the model is built from the given config and --set alone (a variant such "
                 "as w/o SBR needs its own settings, e.g. --set enhance.without_sbr=true)",
                 kRecordFile, checkpoint.string());
    out.config = options.config;
  }
  if (!out.config.has("model")) out.config.set("model", "srgnn");
  out.intents_dir = options.intents;
  if (out.intents_dir.empty() && record) out.intents_dir = record->inputs.intents;
  if (options.intents.empty() && !out.intents_dir.empty() && !fs::exists(out.intents_dir))
    throw InputError(record->file.string(), 0, kIntentsKey,
                     fmt::format("the intents this checkpoint was trained with ({}) are not there; pass --intents "
                                 "DIR (an intents-<key> folder of the run's stages)",
                                 out.intents_dir.string()));
  if (record)
    spdlog::info("load: model settings from {}{}", record->file.string(),
                 out.intents_dir.empty() ? "" : fmt::format(", intents from {}", out.intents_dir.string()));
  out.dataset = dataset_of(options, record, checkpoint);

  if (out.intents_dir.empty()) {
    out.model = build_backbone(out.config, *out.dataset);
  } else {
    const auto [split_dir, done] = finished_split(out.intents_dir);
    out.views = done.at("views").get<std::vector<std::string>>();
    out.text_dim = done.at("dim").get<std::int64_t>();
    if (record) check_intents_fit_checkpoint(out.config, out.views, done.value("r_requested", std::int64_t{-1}), split_dir);
    out.model = build_llm4sbr(out.config, *out.dataset, out.views, out.text_dim);
    if (options.text) load_text_side(out, record);
    // The answers behind the recorded intents only: other intents given here came from elsewhere.
    if (record && options.intents.empty()) out.responses_dir = record->inputs.responses;
  }
  load_checkpoint(*out.model, checkpoint);
  out.model->to(device);
  out.model->eval();
  return out;
}

OnlineIntents online_intents(const TrainedModel& trained) {
  if (!trained.encoder || !trained.catalogue.defined())
    throw Error(fmt::format("{} needs its fitted text encoder to compute intents for new sessions", trained.model->label()));
  OnlineIntents online{intent::catalogue_index(trained.catalogue, "blocked"),
                       intent::intents_options_from_config(trained.config, trained.views)};
  online.options.write_records = false;
  return online;
}

}  // namespace llm4sbr::train
