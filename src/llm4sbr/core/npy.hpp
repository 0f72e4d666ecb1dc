// NumPy .npy files (format version 1.0) of C-order float32 and int64 arrays, so that a Python user can
// `np.load` every embedding and intent file we write (DESIGN.md, "File formats"). Written atomically
// (atomic_file.hpp): a file appears under its final name only once it is complete.
//
// Layout written: the magic "\x93NUMPY", version 1.0, a little-endian uint16 header length, the header
// "{'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }" padded with spaces and a '\n' so that the
// data starts at a multiple of 64 bytes, then the raw little-endian data in C order. Reading accepts
// versions 1.0, 2.0 and 3.0 and checks everything: magic, version, dtype, order, shape and that the
// file holds exactly the bytes the shape promises. Only little-endian hosts are supported (static_assert).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "llm4sbr/core/atomic_file.hpp"

namespace llm4sbr {

// --- .npy ----------------------------------------------------------------------------------------

enum class NpyDtype { kFloat32, kInt64 };

/// "<f4" or "<i8", the numpy dtype string.
const char* npy_descr(NpyDtype dtype);
/// 4 or 8.
std::size_t npy_item_size(NpyDtype dtype);

/// What the header of a .npy file says.
struct NpyHeader {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<std::int64_t> shape;  ///< () for a scalar
  std::uint64_t data_offset = 0;    ///< bytes before the array data

  std::int64_t numel() const;
  std::uint64_t nbytes() const { return static_cast<std::uint64_t>(numel()) * npy_item_size(dtype); }
};

/// The header text (magic to '\n', padded to 64 bytes) of a version 1.0 file.
std::string npy_header(NpyDtype dtype, const std::vector<std::int64_t>& shape);

/// Reads and validates a .npy header. Throws InputError naming the file for a missing file, a bad magic
/// or version, a malformed header, a dtype other than little-endian float32/int64, Fortran order, a
/// negative or overflowing shape, or a file size that disagrees with the shape (truncated or trailing
/// bytes).
NpyHeader read_npy_header(const std::filesystem::path& file);

/// Reads the data of a file whose header was read by read_npy_header into `dst` (header.nbytes() bytes),
/// straight from the file without an intermediate copy. Throws InputError if the file's dtype is not
/// `expected` or the read fails.
void read_npy_data(const std::filesystem::path& file, const NpyHeader& header, NpyDtype expected, void* dst);

template <typename T>
struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<T> data;  ///< C order
};

/// Whole-file reads (header + data). Throw InputError as above, or if the dtype differs.
NpyArray<float> read_npy_float32(const std::filesystem::path& file);
NpyArray<std::int64_t> read_npy_int64(const std::filesystem::path& file);

/// Streams an array of known shape into a .npy file piece by piece (rows of a big matrix as they are
/// computed), atomically: the file appears under its name only at commit(), which also checks that
/// exactly numel() elements were written (Error otherwise).
class NpyWriter {
 public:
  NpyWriter(const std::filesystem::path& file, NpyDtype dtype, std::vector<std::int64_t> shape);

  /// Appends `count` elements. Throws Error on a dtype mismatch or when more than numel() are written.
  void write(const float* data, std::int64_t count);
  void write(const std::int64_t* data, std::int64_t count);
  void commit();

  std::int64_t written() const { return written_; }
  std::int64_t numel() const { return numel_; }

 private:
  void append(NpyDtype dtype, const void* data, std::int64_t count);

  AtomicFile out_;
  NpyDtype dtype_;
  std::vector<std::int64_t> shape_;
  std::int64_t numel_ = 0;
  std::int64_t written_ = 0;
};

/// Whole-array writes (atomic). `data` holds the product of `shape` elements in C order.
void write_npy(const std::filesystem::path& file, const float* data, const std::vector<std::int64_t>& shape);
void write_npy(const std::filesystem::path& file, const std::int64_t* data, const std::vector<std::int64_t>& shape);

}  // namespace llm4sbr
