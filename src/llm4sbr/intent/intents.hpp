// The intent stage: view texts (LLM answers, or item titles for the LLM-free source) -> text embeddings
// -> intent localization (paper Eq. 4-5) -> intent files that training reads as plain float tensors.
//
// Files written into the stage directory:
//   intents.npy         float32 [n_samples, n_views, d_text]; row s = sample s of the split (Sample::id
//                       order as given), views in IntentsOptions::views order
//   localization.jsonl  one line per (sample, view), sample-major: {"sample": id, "view": "long",
//                       "text": ..., "items": [ids], "titles": [...], "scores": [...]} (the top-r items
//                       behind each intent, best first; empty lists for r = 0 and for texts whose
//                       embedding is zero)
//   done.json           written last: shapes, settings, encoder, timings and the caller's cache key.
// Every file goes through a temporary name and a rename, and done.json is removed before anything else
// is written, so an interrupted run never leaves a directory that passes intents_done().
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "llm4sbr/intent/localizer.hpp"

namespace llm4sbr::intent {

/// The texts of one view for `samples`, one per sample, in order. The titles source is view_texts; an
/// LLM source returns the cleaned responses of the (sample, view) prompts.
using ViewTextSource =
    std::function<std::vector<std::string>(const std::vector<data::Sample>& samples, const std::string& view)>;

/// view_texts over `ds` as a ViewTextSource (keeps a reference to ds).
ViewTextSource titles_text_source(const data::PreparedDataset& ds);

struct IntentsOptions {
  std::vector<std::string> views{"long", "short"};
  std::int64_t r = 5;                ///< top-r of Eq. 5; 0 = the raw text embeddings
  bool normalize_weights = false;    ///< divide Eq. 5 by Σ sim (not in the paper)
  std::string localizer = "faiss";   ///< "faiss" or "blocked" (identical results)
  std::int64_t chunk = 8192;         ///< texts per encoder call and queries per localization call
  bool write_records = true;         ///< write localization.jsonl
  std::string key;                   ///< the caller's cache key (hash of inputs and settings), kept in done.json
  std::string data;                  ///< data::samples_fingerprint of the samples, kept in done.json ("data")
};

struct IntentsSummary {
  std::int64_t samples = 0;
  std::int64_t views = 0;
  std::int64_t dim = 0;
  std::int64_t r = 0;               ///< after clamping to the searchable catalogue
  std::int64_t texts = 0;           ///< samples x views
  std::int64_t distinct_texts = 0;  ///< texts encoded and localized (each distinct text once)
  std::int64_t zero_texts = 0;      ///< distinct texts with a zero embedding (empty or all-unknown words)
  double encode_seconds = 0;
  double localize_seconds = 0;
  double write_seconds = 0;
};

/// The catalogue for localization: encoder(titles) [N, d], row k = item id k + 1. An item with an empty
/// title gets a zero row, which the localizer leaves out of its index, so it is never a top-r hit.
torch::Tensor catalogue_embeddings(const data::PreparedDataset& ds, embed::TextEncoder& encoder);

/// The view texts of a split after encoding (the `llm4sbr encode` output): each distinct text once with
/// its embedding, and which text every (sample, view) has.
struct EncodedTexts {
  std::vector<std::string> views;        ///< the second axis of text_index
  std::vector<std::int64_t> sample_ids;  ///< Sample::id of each row, in order
  std::vector<std::string> distinct;     ///< every distinct text once, in first-use order
  std::vector<std::int64_t> text_index;  ///< [samples x views] row-major: index into `distinct`
  torch::Tensor embeddings;              ///< [distinct, d] float32, unit rows (zero for an unrepresentable text)
  std::string encoder;                   ///< TextEncoder::name()
  std::int64_t zero_texts = 0;           ///< distinct texts with a zero embedding
  double seconds = 0;
};

/// Encodes the view texts of `samples` (paper Eq. 2): each distinct text once, in chunks of
/// options.chunk, with a progress bar; rows L2-normalised here if the encoder does not. Throws
/// InputError naming the sample and view whose text embeds to NaN/Inf, and Error when the source returns
/// the wrong number of texts.
EncodedTexts encode_view_texts(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                               const ViewTextSource& source, embed::TextEncoder& encoder, const IntentsOptions& options);

/// Writes `encoded` into `dir`: texts.npy [distinct, d], text_index.npy int64 [samples, views],
/// texts.jsonl (one JSON string per distinct text), sample_ids.npy, and encoded.json last.
void save_encoded_texts(const std::filesystem::path& dir, const EncodedTexts& encoded);
/// Reads what save_encoded_texts wrote. Throws InputError naming the file if it is missing, unfinished
/// (no encoded.json) or inconsistent.
EncodedTexts load_encoded_texts(const std::filesystem::path& dir);

/// Localizes encoded texts against `catalogue` (paper Eq. 4-5) and writes intents.npy,
/// localization.jsonl and done.json into `dir`. `catalogue` is [N, d] from the same encoder. Throws
/// ConfigError for bad options and Error for a catalogue of the wrong shape.
IntentsSummary localize_texts(const std::filesystem::path& dir, const data::PreparedDataset& ds,
                              const EncodedTexts& encoded, const torch::Tensor& catalogue, const IntentsOptions& options);

/// The localization of encoded texts (paper Eq. 4-5), in memory: each distinct text localized once.
struct LocalizedTexts {
  Localization distinct;  ///< intents [u, d], top-r ids and scores [u, r] of EncodedTexts::distinct, in order
  std::int64_t r = 0;     ///< top-r after clamping to the searchable catalogue
  std::int64_t searchable_items = 0;  ///< catalogue items with a non-zero embedding
  std::string localizer;  ///< IntentLocalizer::name()
  double seconds = 0;
};

/// The index Stage 1 searches: the rows of `catalogue` [N, d] L2-normalised (so inner products are the
/// cosines of Eq. 4), with the localizer `kind` ("faiss" or "blocked"). Build it once and share it.
std::unique_ptr<IntentLocalizer> catalogue_index(const torch::Tensor& catalogue, const std::string& kind);

/// Localizes every distinct text of `encoded` against `index` (see catalogue_index), in chunks of options.chunk; no files. r > index.size() is clamped with a warning.
/// Throws ConfigError for bad options, Error when the index's width is not the texts'.
LocalizedTexts localize_encoded(const EncodedTexts& encoded, const IntentLocalizer& index, const IntentsOptions& options);
/// The same against a catalogue [N, d] from the same encoder, indexed for the call (catalogue_index with
/// options.localizer).
LocalizedTexts localize_encoded(const EncodedTexts& encoded, const torch::Tensor& catalogue, const IntentsOptions& options);

/// The intent of every (sample, view), [samples, views, d] float32: row (s, v) is the localized intent of
/// the text of sample s in view v, exactly what localize_texts writes into intents.npy.
torch::Tensor sample_intents(const EncodedTexts& encoded, const LocalizedTexts& localized);

/// View texts turned into intents without touching a file.
struct MemoryIntents {
  EncodedTexts texts;        ///< the encoded texts (encode_view_texts)
  LocalizedTexts localized;  ///< their localization (localize_encoded)
  torch::Tensor intents;     ///< [samples, views, d] float32 (sample_intents): the model's input
};

/// Texts encoded and localized ahead of time, looked up by their text: what encode_view_texts and
/// localize_encoded give each of them (both work text by text, so a text's rows do not depend on the others
/// encoded or localized with it). The service keeps every catalogue title here: the short view's text of any
/// session, and every view's text of a one-click session.
struct PrecomputedTexts {
  std::unordered_map<std::string, std::int64_t> row_of;  ///< text -> row of the tensors below
  torch::Tensor embeddings;                              ///< [n, d] float32 unit rows, as EncodedTexts::embeddings
  LocalizedTexts localized;                              ///< [n, ...] rows, as localize_encoded gives them
};

/// Encodes and localizes `texts` (each distinct text once) for intents_in_memory. Costs what the texts' intent
/// stage costs (12,101 Beauty titles: 1-2 s) and keeps 2·n·d floats. Throws as encode_view_texts and
/// localize_encoded do (InputError naming the text's line, 1-based, for one embedding to NaN/Inf).
PrecomputedTexts precompute_texts(const std::vector<std::string>& texts, embed::TextEncoder& encoder,
                                  const IntentLocalizer& index, const IntentsOptions& options);

/// Stage 1 for `samples` in memory: encode_view_texts, localize_encoded against `index` (catalogue_index),
/// sample_intents. With `known` (precompute_texts with the same encoder, index and options), its texts are
/// looked up instead of encoded and localized: the same result.
/// This is the file stage (write_intents) without the files, equal to what it writes; the online service
/// calls it per request. Thread-safety: concurrent calls may share the IntentLocalizer (search is const)
/// and a fitted TF-IDF encoder (its encode() only reads the fitted model; each call has its own
/// vectorizer), but not a llama.cpp or OpenAI encoder (one llama context, one connection pool): those need
/// one encoder per thread or a lock around the call. Throws as encode_view_texts and localize_encoded do.
MemoryIntents intents_in_memory(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                const ViewTextSource& source, embed::TextEncoder& encoder, const IntentLocalizer& index,
                                const IntentsOptions& options, const PrecomputedTexts* known = nullptr);

/// catalogue.npy: the [N, d] float32 title embeddings as a tensor file, and back. load_catalogue throws
/// InputError naming the file if it is missing or not a 2-D float32 array.
void save_catalogue(const std::filesystem::path& file, const torch::Tensor& catalogue);
torch::Tensor load_catalogue(const std::filesystem::path& file);

/// Runs the stage for one split and writes `dir` (created if needed): encode_view_texts, then
/// localize_texts. `catalogue` is
/// catalogue_embeddings(ds, encoder) (or any [N, d] from the same encoder). If the encoder does not
/// L2-normalise, queries and catalogue rows are normalised here so that inner products are the cosines
/// of Eq. 4. Identical texts are encoded and localized once. Shows progress bars for encoding and
/// localization. Throws ConfigError for bad options, InputError naming the sample and view whose text
/// embeds to NaN/Inf, and Error when the source returns the wrong number of texts.
IntentsSummary write_intents(const std::filesystem::path& dir, const data::PreparedDataset& ds,
                             const std::vector<data::Sample>& samples, const ViewTextSource& source,
                             embed::TextEncoder& encoder, const torch::Tensor& catalogue,
                             const IntentsOptions& options);

/// done.json of a finished stage directory, or nullopt if the stage did not finish there.
std::optional<nlohmann::json> intents_done(const std::filesystem::path& dir);

/// True if `dir` holds finished intents whose done.json carries `key`.
bool intents_ready(const std::filesystem::path& dir, const std::string& key);

/// intents.npy of a finished directory as a [n_samples, n_views, d] float32 tensor. Throws InputError if
/// done.json is missing (unfinished run) or the array disagrees with it.
torch::Tensor read_intents(const std::filesystem::path& dir);

}  // namespace llm4sbr::intent
