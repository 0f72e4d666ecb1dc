// The prepared dataset directory (DESIGN.md, "File formats"):
//   items.tsv     model_id \t raw_id \t title          (header line, ids 1..N in order)
//   sessions.tsv  session_index \t key \t split \t start_time \t item ids (space-separated)
//   train.tsv / valid.tsv / test.tsv
//                 sample_id \t session_index \t prefix ids (space-separated) \t target id
//   stats.json    dataset_stats()
// Tabs and newlines inside titles and keys cannot be written: prepare() replaces them by spaces (tsv_field)
// before anything uses them, so that a dataset read back equals the one written, byte for byte, and the
// prompts and hashes of a resumed run equal those of the first.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "llm4sbr/data/dataset.hpp"

namespace llm4sbr::data {

/// `text` as a field of the prepared TSV files holds it: tabs, newlines and carriage returns become spaces.
std::string tsv_field(std::string_view text);

/// A hash of the catalogue (every item's id and title) and of `samples` (id, prefix, target): what Stage 1
/// files made by hand record, so that they can be checked against the prepared data they are used with.
std::string samples_fingerprint(const PreparedDataset& ds, const std::vector<Sample>& samples);

/// Writes every file of a prepared dataset into `dir` (created if needed). Files are written to a
/// temporary name and renamed, so a killed run never leaves a half-written dataset behind.
void write_prepared(const PreparedDataset& ds, const std::filesystem::path& dir);

/// Reads a prepared dataset directory. Throws InputError (file, line, field) on malformed rows or ids
/// outside 1..N.
PreparedDataset read_prepared(const std::filesystem::path& dir);

/// True if `dir` holds a complete prepared dataset (all files present).
bool is_prepared(const std::filesystem::path& dir);

}  // namespace llm4sbr::data
