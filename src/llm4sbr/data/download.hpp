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

}  // namespace llm4sbr::data
