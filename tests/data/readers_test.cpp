#include "llm4sbr/data/readers.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>

#include "llm4sbr/core/error.hpp"
#include "test_support.hpp"

namespace llm4sbr::data {
namespace {

using llm4sbr::testing::data_dir;
using llm4sbr::testing::TempDir;

void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

std::size_t count_users(const RawDataset& raw) {
  std::set<std::string> users;
  for (const auto& x : raw.interactions) users.insert(x.session_key);
  return users.size();
}

/// Runs `fn`, expects an InputError, and checks that its message names the file, line and field.
template <typename F>
void expect_input_error(F&& fn, const std::string& file, std::size_t line, const std::string& field) {
  try {
    fn();
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_EQ(e.line(), line) << msg;
    if (line > 0) {
      EXPECT_NE(msg.find(":" + std::to_string(line) + ":"), std::string::npos) << msg;
    }
    EXPECT_EQ(e.field(), field) << msg;
    if (!field.empty()) {
      EXPECT_NE(msg.find("'" + field + "'"), std::string::npos) << msg;
    }
  }
}

// --- real data ---------------------------------------------------------------------------------

TEST(Readers, MovieLens100k) {
  LLM4SBR_REQUIRE_DATA("ml-100k");
  const RawDataset raw = read_movielens_100k(data_dir() / "ml-100k");
  EXPECT_EQ(raw.interactions.size(), 100000u);
  EXPECT_EQ(count_users(raw), 943u);
  EXPECT_EQ(raw.titles.size(), 1682u);
  EXPECT_EQ(raw.titles.at("1"), "Toy Story (1995) -- Animation|Children's|Comedy");
  // Latin-1 in u.item becomes UTF-8.
  EXPECT_EQ(raw.titles.at("543"), "Mis\xC3\xA9rables, Les (1995) -- Drama|Musical");
  // First row of u.data: 196 242 3 881250949.
  EXPECT_EQ(raw.interactions[0].session_key, "196");
  EXPECT_EQ(raw.interactions[0].item, "242");
  EXPECT_EQ(raw.interactions[0].timestamp, 881250949);
  EXPECT_EQ(raw.interactions[0].order, 0);
  EXPECT_EQ(raw.skipped_rows, 0);
}

TEST(Readers, MovieLensLatestSmall) {
  LLM4SBR_REQUIRE_DATA("ml-latest-small");
  const RawDataset raw = read_movielens_latest(data_dir() / "ml-latest-small");
  EXPECT_EQ(raw.interactions.size(), 100836u);
  EXPECT_EQ(count_users(raw), 610u);
  EXPECT_EQ(raw.titles.size(), 9742u);
  EXPECT_EQ(raw.titles.at("1"), "Toy Story (1995) -- Adventure|Animation|Children|Comedy|Fantasy");
  // A quoted title with a comma (the file also has CRLF line ends).
  EXPECT_EQ(raw.titles.at("11"), "American President, The (1995) -- Comedy|Drama|Romance");
  EXPECT_EQ(raw.interactions[0].timestamp, 964982703);
}

TEST(Readers, MovieLens1mWithoutRatingsFails) {
  LLM4SBR_REQUIRE_DATA("ml-1m");
  try {
    read_movielens_1m(data_dir() / "ml-1m");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ratings.dat"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
    EXPECT_EQ(e.line(), 0u);
  }
}

TEST(Readers, MovieLens1mHandMadeRatingsRealMovies) {
  LLM4SBR_REQUIRE_DATA("ml-1m");
  TempDir tmp;
  std::filesystem::copy_file(data_dir() / "ml-1m" / "movies.dat", tmp / "movies.dat");
  write_file(tmp / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n");
  const RawDataset raw = read_movielens_1m(tmp.path());
  ASSERT_EQ(raw.interactions.size(), 3u);
  EXPECT_EQ(raw.interactions[2].session_key, "2");
  EXPECT_EQ(raw.interactions[2].item, "1357");
  EXPECT_EQ(raw.interactions[1].timestamp, 978302109);
  EXPECT_EQ(raw.titles.size(), 3883u);
  EXPECT_EQ(raw.titles.at("1"), "Toy Story (1995) -- Animation|Children's|Comedy");
  // "\xe9" in movies.dat (ISO-8859-1) is "é" in UTF-8.
  EXPECT_EQ(raw.titles.at("73"), "Mis\xC3\xA9rables, Les (1995) -- Drama|Musical");
  EXPECT_EQ(raw.titles.at("582"), "Metisse (Caf\xC3\xA9 au Lait) (1993) -- Comedy");
}

TEST(Readers, MovieLens1mLatin1Title) {
  TempDir tmp;
  write_file(tmp / "movies.dat", "7::Caf\xE9 (1999)::Drama\n");
  write_file(tmp / "ratings.dat", "1::7::4::100\n");
  const RawDataset raw = read_movielens_1m(tmp.path());
  EXPECT_EQ(raw.titles.at("7"), "Caf\xC3\xA9 (1999) -- Drama");
}

TEST(Readers, AmazonBeauty) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const RawDataset raw = read_amazon_beauty(data_dir() / "amazon-beauty-2014");
  EXPECT_EQ(raw.interactions.size(), 198502u);
  EXPECT_EQ(count_users(raw), 22363u);
  std::set<std::string> items;
  for (const auto& x : raw.interactions) items.insert(x.item);
  EXPECT_EQ(items.size(), 12101u);
  EXPECT_EQ(raw.titles.size(), 12101u);
  const auto empty =
      std::count_if(raw.titles.begin(), raw.titles.end(), [](const auto& kv) { return kv.second.empty(); });
  EXPECT_EQ(empty, 7);
  // README: global id 12093 -> B0019W219G.
  EXPECT_EQ(raw.titles.at("B0019W219G"), "Benefit Cosmetics Full-Finish Lipstick Espionage");
  // Order is the running position; timestamps are whole days, non-decreasing within a user.
  for (std::size_t i = 0; i < raw.interactions.size(); ++i) {
    const auto& x = raw.interactions[i];
    ASSERT_EQ(x.order, static_cast<std::int64_t>(i));
    ASSERT_EQ(x.timestamp % 86400, 0);
    if (i > 0 && raw.interactions[i - 1].session_key == x.session_key) {
      ASSERT_LE(raw.interactions[i - 1].timestamp, x.timestamp);
    }
  }
  // Users come in SessionId order (session_id_to_int.json); user A1YJEY40YUW4SE is line 1 of
  // user_sequence.txt with 5 clicks, the first being B004756YJA.
  std::vector<std::string> clicks;
  for (const auto& x : raw.interactions)
    if (x.session_key == "A1YJEY40YUW4SE") clicks.push_back(x.item);
  EXPECT_EQ(clicks, (std::vector<std::string>{"B004756YJA", "B004ZT0SSG", "B0020YLEYK", "7806397051", "B002WLWX82"}));
}

TEST(Readers, AmazonBeautyMultisetMismatch) {
  TempDir tmp;
  write_file(tmp / "user_sequence.txt", "U1 A B C\nU2 B C\n");
  // Ranks: A=1, B=2, C=3; line 2 claims items 2 and 1 (A) instead of B and C.
  write_file(tmp / "Beauty_item_org_rank.txt", "1 1 2 3\n2 2 1\n");
  write_file(tmp / "Beauty_time_org_rank.txt", "1 10 20 20\n2 5 6\n");
  write_file(tmp / "session_id_to_int.json", R"({"U1": 0, "U2": 1})");
  write_file(tmp / "item_id_to_int.json", R"({"A": 0, "B": 1, "C": 2})");
  write_file(tmp / "products_lookup.csv", ",global_product_id,name\n0,0,a\n1,1,\"b, with comma\"\n2,2,\n");
  expect_input_error([&] { read_amazon_beauty(tmp.path()); }, "Beauty_item_org_rank.txt", 2, "item");

  ReadOptions skip;
  skip.skip_malformed = true;
  const RawDataset raw = read_amazon_beauty(tmp.path(), skip);
  EXPECT_EQ(raw.skipped_rows, 1);
  ASSERT_EQ(raw.interactions.size(), 3u);
  EXPECT_EQ(raw.interactions[2].timestamp, 20);
  EXPECT_EQ(raw.titles.at("B"), "b, with comma");
  EXPECT_EQ(raw.titles.at("C"), "");

  // A number beyond double's range in a JSON file (found by fuzz/dataset_reader_fuzz.cpp, where nlohmann's
  // out_of_range escaped): an InputError naming the file.
  write_file(tmp / "item_id_to_int.json", R"({"A": 0, "B": 9E559, "C": 2})");
  expect_input_error([&] { read_amazon_beauty(tmp.path(), skip); }, "item_id_to_int.json", 0, "");
}

TEST(Readers, AmazonBeautyOrdersUsersBySessionId) {
  TempDir tmp;
  write_file(tmp / "user_sequence.txt", "U1 A B\nU2 C A B\n");
  write_file(tmp / "Beauty_item_org_rank.txt", "1 1 2\n2 3 1 2\n");
  write_file(tmp / "Beauty_time_org_rank.txt", "1 30 10\n2 7 7 8\n");
  write_file(tmp / "session_id_to_int.json", R"({"U1": 5, "U2": 3})");
  write_file(tmp / "item_id_to_int.json", R"({"A": 0, "B": 1, "C": 2})");
  write_file(tmp / "products_lookup.csv", ",global_product_id,name\n0,0,a\n1,1,b\n2,2,c\n");
  const RawDataset raw = read_amazon_beauty(tmp.path());
  ASSERT_EQ(raw.interactions.size(), 5u);
  EXPECT_EQ(raw.interactions[0].session_key, "U2");
  EXPECT_EQ(raw.interactions[0].item, "C");
  EXPECT_EQ(raw.interactions[3].session_key, "U1");
  // The k-th click gets the k-th smallest timestamp of its user.
  EXPECT_EQ(raw.interactions[3].timestamp, 10);
  EXPECT_EQ(raw.interactions[4].timestamp, 30);
}

// --- generic reader and broken inputs -----------------------------------------------------------

TEST(Readers, GenericQuotedTitle) {
  TempDir tmp;
  write_file(tmp / "interactions.csv", "session_id,item_id,timestamp\ns1,i1,100\r\ns1,i2,90\ns2,i1,50\n");
  write_file(tmp / "items.csv", "item_id,title\ni1,\"Shampoo, 250 ml\"\ni2,\"Say \"\"hi\"\"\nagain\"\n");
  const RawDataset raw = read_generic(tmp.path());
  ASSERT_EQ(raw.interactions.size(), 3u);
  EXPECT_EQ(raw.interactions[1].session_key, "s1");
  EXPECT_EQ(raw.interactions[1].item, "i2");
  EXPECT_EQ(raw.interactions[1].timestamp, 90);
  EXPECT_EQ(raw.interactions[2].order, 2);
  EXPECT_EQ(raw.titles.at("i1"), "Shampoo, 250 ml");
  EXPECT_EQ(raw.titles.at("i2"), "Say \"hi\"\nagain");
}

TEST(Readers, GenericUserIdWithoutItemsFile) {
  TempDir tmp;
  write_file(tmp / "interactions.csv", "user_id,item_id\nu,a\nu,b\n");
  const RawDataset raw = read_generic(tmp.path());
  ASSERT_EQ(raw.interactions.size(), 2u);
  EXPECT_EQ(raw.interactions[1].timestamp, 0);
  EXPECT_TRUE(raw.titles.empty());
}

TEST(Readers, GenericShortRow) {
  TempDir tmp;
  write_file(tmp / "interactions.csv", "session_id,item_id,timestamp\ns1,i1,100\ns1,i2\n");
  expect_input_error([&] { read_generic(tmp.path()); }, "interactions.csv", 3, "timestamp");
}

TEST(Readers, GenericNonNumericTimestamp) {
  TempDir tmp;
  write_file(tmp / "interactions.csv", "session_id,item_id,timestamp\ns1,i1,100\ns1,i2,yesterday\n");
  expect_input_error([&] { read_generic(tmp.path()); }, "interactions.csv", 3, "timestamp");
}

TEST(Readers, GenericInvalidUtf8) {
  TempDir tmp;
  write_file(tmp / "interactions.csv", "session_id,item_id,timestamp\ns1,i1,100\n");
  write_file(tmp / "items.csv", "item_id,title\ni1,ok\ni2,\"Caf\xE9\"\n");
  expect_input_error([&] { read_generic(tmp.path()); }, "items.csv", 3, "title");
}

TEST(Readers, GenericUnterminatedQuote) {
  TempDir tmp;
  write_file(tmp / "interactions.csv", "session_id,item_id,timestamp\ns1,i1,100\n");
  write_file(tmp / "items.csv", "item_id,title\ni1,ok\ni2,\"never closed\n");
  expect_input_error([&] { read_generic(tmp.path()); }, "items.csv", 3, "title");
}

TEST(Readers, GenericMissingFile) {
  TempDir tmp;
  expect_input_error([&] { read_generic(tmp.path()); }, "interactions.csv", 0, "");
}

TEST(Readers, MovieLensLatestNonNumericId) {
  TempDir tmp;
  write_file(tmp / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,x1,4.0,964982703\n");
  write_file(tmp / "movies.csv", "movieId,title,genres\n1,A (2000),Drama\n");
  expect_input_error([&] { read_movielens_latest(tmp.path()); }, "ratings.csv", 3, "movieId");
}

TEST(Readers, MovieLens1mShortRowAndSkip) {
  TempDir tmp;
  write_file(tmp / "movies.dat", "1::A (2000)::Drama\n");
  write_file(tmp / "ratings.dat", "1::1::5::100\n1::1::5\n2::abc::5::7\n2::1::5::200\n");
  expect_input_error([&] { read_movielens_1m(tmp.path()); }, "ratings.dat", 2, "Timestamp");

  ReadOptions skip;
  skip.skip_malformed = true;
  const RawDataset raw = read_movielens_1m(tmp.path(), skip);
  EXPECT_EQ(raw.skipped_rows, 2);
  ASSERT_EQ(raw.interactions.size(), 2u);
  EXPECT_EQ(raw.interactions[1].timestamp, 200);
  EXPECT_EQ(raw.interactions[1].order, 1);
}

TEST(Readers, MovieLens100kBadGenreFlag) {
  TempDir tmp;
  write_file(tmp / "u.data", "1\t1\t5\t100\n");
  write_file(tmp / "u.genre", "unknown|0\nDrama|1\n\n");
  write_file(tmp / "u.item", "1|A (2000)|01-Jan-2000||url|0|1\n2|B (2001)|01-Jan-2001||url|0|x\n");
  expect_input_error([&] { read_movielens_100k(tmp.path()); }, "u.item", 2, "genre Drama");
}

TEST(Readers, SkipMalformedInvalidUtf8) {
  TempDir tmp;
  write_file(tmp / "interactions.csv", "session_id,item_id,timestamp\ns1,i\xFF,1\ns1,i2,2\ns1,i3\n");
  ReadOptions skip;
  skip.skip_malformed = true;
  const RawDataset raw = read_generic(tmp.path(), skip);
  EXPECT_EQ(raw.skipped_rows, 2);
  ASSERT_EQ(raw.interactions.size(), 1u);
  EXPECT_EQ(raw.interactions[0].item, "i2");
}

TEST(Readers, Dispatch) {
  EXPECT_EQ(dataset_folder("beauty"), "amazon-beauty-2014");
  EXPECT_EQ(dataset_folder("ml-100k"), "ml-100k");
  EXPECT_THROW(dataset_folder("netflix"), ConfigError);
  EXPECT_THROW(read_dataset("netflix", "/nonexistent"), ConfigError);
  const auto names = known_datasets();
  EXPECT_NE(std::find(names.begin(), names.end(), "ml-latest-small"), names.end());
  TempDir tmp;
  write_file(tmp / "interactions.csv", "session_id,item_id\ns,a\n");
  EXPECT_EQ(read_dataset("generic", tmp.path()).name, "generic");
}

}  // namespace
}  // namespace llm4sbr::data
