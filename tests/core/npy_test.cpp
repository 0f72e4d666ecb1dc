#include "llm4sbr/core/npy.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <numeric>

#include "llm4sbr/core/error.hpp"
#include "test_support.hpp"

namespace llm4sbr {
namespace {

using llm4sbr::testing::TempDir;
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

/// The InputError message of fn(), which must throw one.
template <typename F>
std::string input_error(F&& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError thrown";
  return {};
}

TEST(Npy, Float32RoundTrip) {
  TempDir tmp;
  std::vector<float> data(3 * 4 * 5);
  std::iota(data.begin(), data.end(), -7.25f);
  write_npy(tmp / "a.npy", data.data(), {3, 4, 5});
  const auto back = read_npy_float32(tmp / "a.npy");
  EXPECT_EQ(back.shape, (std::vector<std::int64_t>{3, 4, 5}));
  EXPECT_EQ(back.data, data);
  const auto h = read_npy_header(tmp / "a.npy");
  EXPECT_EQ(h.data_offset % 64, 0u);
  EXPECT_EQ(h.numel(), 60);
  EXPECT_EQ(fs::file_size(tmp / "a.npy"), h.data_offset + 240);
}

TEST(Npy, Int64RoundTripAndShapes) {
  TempDir tmp;
  const std::vector<std::int64_t> ids{0, -1, 1LL << 40, 42};
  write_npy(tmp / "ids.npy", ids.data(), {4});
  auto back = read_npy_int64(tmp / "ids.npy");
  EXPECT_EQ(back.shape, (std::vector<std::int64_t>{4}));
  EXPECT_EQ(back.data, ids);
  // Python's repr of a 1-tuple has a trailing comma.
  EXPECT_NE(slurp(tmp / "ids.npy").find("'shape': (4,)"), std::string::npos);

  write_npy(tmp / "empty.npy", static_cast<const float*>(nullptr), {0, 7});
  const auto empty = read_npy_float32(tmp / "empty.npy");
  EXPECT_EQ(empty.shape, (std::vector<std::int64_t>{0, 7}));
  EXPECT_TRUE(empty.data.empty());

  const float pi = 3.25f;
  write_npy(tmp / "scalar.npy", &pi, {});
  const auto scalar = read_npy_float32(tmp / "scalar.npy");
  EXPECT_TRUE(scalar.shape.empty());
  ASSERT_EQ(scalar.data.size(), 1u);
  EXPECT_EQ(scalar.data[0], pi);
}

TEST(Npy, ReadsHandMadeHeaders) {
  TempDir tmp;
  // Keys in another order, double quotes, no trailing comma, version 2.0 with a 4-byte length.
  const std::string dict = "{\"shape\": (2, 1), \"fortran_order\": False, \"descr\": \"<f4\"}\n";
  std::string v1 = std::string("\x93NUMPY\x01\x00", 8);
  v1.push_back(static_cast<char>(dict.size()));
  v1.push_back('\0');
  v1 += dict;
  const float vals[2] = {1.5f, -2.0f};
  v1.append(reinterpret_cast<const char*>(vals), sizeof(vals));
  spit(tmp / "v1.npy", v1);
  auto a = read_npy_float32(tmp / "v1.npy");
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(a.data, (std::vector<float>{1.5f, -2.0f}));

  std::string v2 = std::string("\x93NUMPY\x02\x00", 8);
  v2.push_back(static_cast<char>(dict.size()));
  v2.append(3, '\0');
  v2 += dict;
  v2.append(reinterpret_cast<const char*>(vals), sizeof(vals));
  spit(tmp / "v2.npy", v2);
  EXPECT_EQ(read_npy_float32(tmp / "v2.npy").data, a.data);
}

TEST(Npy, RejectsBadFilesNamingThem) {
  TempDir tmp;
  const std::vector<float> data{1, 2, 3, 4, 5, 6};
  write_npy(tmp / "good.npy", data.data(), {2, 3});
  const std::string good = slurp(tmp / "good.npy");

  auto with = [&](const std::string& name, std::string bytes) {
    spit(tmp / name, bytes);
    return (tmp / name).string();
  };
  std::string bad_magic = good;
  bad_magic[1] = 'X';
  auto f = with("magic.npy", bad_magic);
  EXPECT_NE(input_error([&] { read_npy_float32(f); }).find(f), std::string::npos);
  EXPECT_NE(input_error([&] { read_npy_float32(f); }).find("magic"), std::string::npos);

  std::string f8 = good;
  f8.replace(f8.find("<f4"), 3, "<f8");
  f = with("f8.npy", f8);
  EXPECT_NE(input_error([&] { read_npy_float32(f); }).find("<f8"), std::string::npos);

  std::string big_endian = good;
  big_endian.replace(big_endian.find("<f4"), 3, ">f4");
  f = with("be.npy", big_endian);
  EXPECT_NE(input_error([&] { read_npy_float32(f); }).find(">f4"), std::string::npos);

  std::string fortran = good;
  fortran.replace(fortran.find("False"), 5, "True ");
  f = with("fortran.npy", fortran);
  EXPECT_NE(input_error([&] { read_npy_float32(f); }).find("Fortran"), std::string::npos);

  f = with("truncated.npy", good.substr(0, good.size() - 4));
  const auto msg = input_error([&] { read_npy_float32(f); });
  EXPECT_NE(msg.find(f), std::string::npos);
  EXPECT_NE(msg.find("truncated"), std::string::npos);

  f = with("trailing.npy", good + "xx");
  EXPECT_NE(input_error([&] { read_npy_float32(f); }).find("trailing"), std::string::npos);

  std::string garbled = good;
  garbled.replace(garbled.find("'shape'"), 7, "'shope'");
  f = with("garbled.npy", garbled);
  EXPECT_NE(input_error([&] { read_npy_float32(f); }).find("shope"), std::string::npos);

  // A float32 file read as int64 names the dtype.
  EXPECT_NE(input_error([&] { read_npy_int64(tmp / "good.npy"); }).find("expected '<i8'"), std::string::npos);
  EXPECT_NE(input_error([&] { read_npy_float32(tmp / "missing.npy"); }).find("missing.npy"), std::string::npos);
}

TEST(Npy, WriterIsAtomicAndChecksCount) {
  TempDir tmp;
  const std::vector<float> row(8, 1.0f);
  {
    NpyWriter w(tmp / "partial.npy", NpyDtype::kFloat32, {3, 8});
    w.write(row.data(), 8);
    w.write(row.data(), 8);
    EXPECT_FALSE(fs::exists(tmp / "partial.npy"));  // only the temporary exists until commit
    EXPECT_THROW(w.commit(), Error);                // 16 of 24 elements
  }
  {
    NpyWriter w(tmp / "abandoned.npy", NpyDtype::kFloat32, {1, 8});
    w.write(row.data(), 8);
  }  // never committed
  {
    NpyWriter w(tmp / "over.npy", NpyDtype::kFloat32, {1, 4});
    EXPECT_THROW(w.write(row.data(), 8), Error);
    const std::int64_t ids[1] = {1};
    EXPECT_THROW(w.write(ids, 1), Error);  // wrong dtype
  }
  EXPECT_TRUE(fs::is_empty(tmp.path())) << "temporary files were left behind";

  NpyWriter w(tmp / "rows.npy", NpyDtype::kFloat32, {3, 8});
  for (int i = 0; i < 3; ++i) w.write(row.data(), 8);
  w.commit();
  EXPECT_EQ(read_npy_float32(tmp / "rows.npy").data.size(), 24u);
}

/// A python3 that can import numpy, or "" (then the numpy checks are skipped).
std::string python_with_numpy() {
  for (const char* py : {"python3", "/usr/bin/python3"}) {
    const std::string cmd = std::string(py) + " -c 'import numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return {};
}

TEST(Npy, NumpyLoadsWhatWeWriteAndWeReadWhatNumpyWrites) {
  const std::string py = python_with_numpy();
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy";
  TempDir tmp;
  std::vector<float> data(2 * 3 * 4);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = 0.5f * static_cast<float>(i) - 3.0f;
  write_npy(tmp / "ours.npy", data.data(), {2, 3, 4});
  const std::vector<std::int64_t> ids{5, -6, 7};
  write_npy(tmp / "ids.npy", ids.data(), {3});
  const std::string script =
      "import numpy as np, sys\n"
      "a = np.load(sys.argv[1] + '/ours.npy')\n"
      "assert a.dtype == np.float32 and a.shape == (2, 3, 4) and a.flags['C_CONTIGUOUS'], (a.dtype, a.shape)\n"
      "assert np.array_equal(a.ravel(), 0.5 * np.arange(24, dtype=np.float32) - 3), a\n"
      "b = np.load(sys.argv[1] + '/ids.npy')\n"
      "assert b.dtype == np.int64 and b.tolist() == [5, -6, 7], b\n"
      "np.save(sys.argv[1] + '/theirs.npy', np.arange(12, dtype=np.float32).reshape(3, 4) * 2)\n"
      "np.save(sys.argv[1] + '/theirs_i8.npy', np.array([[1, 2], [3, -4]], dtype=np.int64))\n";
  spit(tmp / "check.py", script);
  const std::string cmd = py + " " + (tmp / "check.py").string() + " " + tmp.path().string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto theirs = read_npy_float32(tmp / "theirs.npy");
  EXPECT_EQ(theirs.shape, (std::vector<std::int64_t>{3, 4}));
  for (std::size_t i = 0; i < theirs.data.size(); ++i) EXPECT_EQ(theirs.data[i], 2.0f * static_cast<float>(i));
  const auto ti8 = read_npy_int64(tmp / "theirs_i8.npy");
  EXPECT_EQ(ti8.shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(ti8.data, (std::vector<std::int64_t>{1, 2, 3, -4}));
}

TEST(Npy, AtomicFileTextAndNoLeftovers) {
  TempDir tmp;
  write_file_atomically(tmp / "a.json", "{}\n");
  EXPECT_EQ(slurp(tmp / "a.json"), "{}\n");
  {
    AtomicFile f(tmp / "b.txt");
    f.write("half");
  }
  EXPECT_FALSE(fs::exists(tmp / "b.txt"));
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path())) ++files;
  EXPECT_EQ(files, 1u);
}

// A killed writer leaves "NAME.tmp.PID": the next whole write of NAME removes it, not the temporary file of a
// process still alive (another writer of NAME).
TEST(Npy, AWholeWriteRemovesTheTemporariesOfKilledWritersOnly) {
  TempDir tmp;
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a process that is gone
  const auto orphan = tmp / ("c.npy.tmp." + std::to_string(child));
  const auto alive = tmp / ("c.npy.tmp." + std::to_string(::getppid()));
  const auto other = tmp / ("d.npy.tmp." + std::to_string(child));
  for (const auto& f : {orphan, alive, other}) std::ofstream(f) << "part";
  write_file_atomically(tmp / "c.npy", "whole");
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(fs::exists(alive)) << "a live writer's file was removed";
  EXPECT_TRUE(fs::exists(other)) << "only NAME's temporaries are NAME's to remove";
  EXPECT_EQ(slurp(tmp / "c.npy"), "whole");
  // A whole folder (training's clean-up before it writes): every gone writer's file, a live one's kept.
  const auto removed = remove_orphaned_temporaries(tmp.path());
  EXPECT_EQ(removed, std::vector<fs::path>{other});
  EXPECT_TRUE(fs::exists(alive)) << "a live writer's file was removed";
}

}  // namespace
}  // namespace llm4sbr
