// `llm4sbr download DATASET`: fetches the public files of a dataset from their official or pinned
// sources into DATA_DIR/<folder>, checks SHA-256 where the file is pinned, and unpacks archives.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace llm4sbr::data {

/// Names `download_dataset` accepts.
std::vector<std::string> downloadable_datasets();

/// Downloads `name` into data_dir/dataset_folder(name). Fails fast (connect timeout 15 s, a transfer that
/// stalls for 60 s is aborted) with an Error naming the URL and curl's reason when there is no network;
/// a checksum mismatch is an Error too, and the bad file is removed. Files already present with the right
/// checksum are kept.
void download_dataset(const std::string& name, const std::filesystem::path& data_dir);

/// Names `download_model` accepts: instruct chat models for Stage 1 and embedding models for the text
/// encoder, each a GGUF file on a public model hub.
std::vector<std::string> downloadable_models();

/// Downloads the GGUF file of model `name` into models_dir (created if needed) and returns its path,
/// for `llm.model: llama:PATH` or `embed.encoder: llama:PATH`. A file already there is kept. The hubs do
/// not publish stable checksums for these files, so none is pinned: the SHA-256 of what arrived is
/// written beside it (<file>.sha256) and logged. Throws ConfigError for an unknown name and Error (with
/// the URL and curl's reason) when the download fails.
std::filesystem::path download_model(const std::string& name, const std::filesystem::path& models_dir);

}  // namespace llm4sbr::data
