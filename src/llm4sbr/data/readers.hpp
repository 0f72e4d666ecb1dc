// Readers for the raw datasets llm4sbr knows, each returning interactions in source order plus titles.
//
// Every reader throws InputError naming the file, 1-based line and field for a missing file, a short
// row, a non-numeric id or timestamp, or text that is not valid in the file's encoding. With
// `skip_malformed` a bad row is skipped and counted in RawDataset::skipped_rows instead (a missing
// file is always an error).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "llm4sbr/data/dataset.hpp"

namespace llm4sbr::data {

struct ReadOptions {
  bool skip_malformed = false;  ///< skip and count bad rows instead of failing
};

/// MovieLens-1M: ratings.dat (UserID::MovieID::Rating::Timestamp) and movies.dat
/// (MovieID::Title::Genres), '::'-separated, ISO-8859-1 (converted to UTF-8).
/// Titles are formatted like the LLM4SBR reference: "Title (Year) -- Genres", genres as in the source
/// ("Toy Story (1995) -- Animation|Children's|Comedy"). The other MovieLens readers do the same.
RawDataset read_movielens_1m(const std::filesystem::path& dir, const ReadOptions& opt = {});

/// MovieLens-100k: u.data (tab-separated user, item, rating, timestamp) and u.item ('|'-separated,
/// ISO-8859-1; title in field 2, 19 genre flags at the end, genre names from u.genre).
RawDataset read_movielens_100k(const std::filesystem::path& dir, const ReadOptions& opt = {});

/// ml-latest / ml-latest-small: ratings.csv (userId,movieId,rating,timestamp, with header) and
/// movies.csv (movieId,title,genres; titles may be quoted and contain commas), UTF-8.
RawDataset read_movielens_latest(const std::filesystem::path& dir, const ReadOptions& opt = {});

/// Amazon Beauty 2014 5-core as laid out in shared/data/amazon-beauty-2014: the click order of
/// user_sequence.txt, the day timestamps of Beauty_time_org_rank.txt (joined through
/// Beauty_item_org_rank.txt, whose item ids are 1-based ranks of the sorted distinct ASINs), and titles
/// from products_lookup.csv through item_id_to_int.json. One session key per user (reviewerID).
RawDataset read_amazon_beauty(const std::filesystem::path& dir, const ReadOptions& opt = {});

/// A user's own data: interactions.csv (header; columns session_id or user_id, item_id, timestamp)
/// and an optional items.csv (header; item_id, title). Comma-separated, RFC 4180 quoting, UTF-8.
RawDataset read_generic(const std::filesystem::path& dir, const ReadOptions& opt = {});

/// Dispatches on a dataset name: "ml-1m", "ml-100k", "ml-latest-small", "ml-latest", "beauty"
/// (also "amazon-beauty-2014"), or "generic". Throws ConfigError for an unknown name.
RawDataset read_dataset(const std::string& name, const std::filesystem::path& dir, const ReadOptions& opt = {});

/// The folder name of a dataset under the data directory ("beauty" -> "amazon-beauty-2014").
std::string dataset_folder(const std::string& name);

/// Names read_dataset accepts.
std::vector<std::string> known_datasets();

}  // namespace llm4sbr::data
