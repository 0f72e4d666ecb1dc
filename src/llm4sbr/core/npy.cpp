#include "llm4sbr/core/npy.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr {

static_assert(std::endian::native == std::endian::little, ".npy I/O assumes a little-endian host");

namespace fs = std::filesystem;

// --- AtomicFile ---------------------------------------------------------------------------------

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  tmp_ = target_;
  tmp_ += fmt::format(".tmp.{}", ::getpid());
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) throw Error(fmt::format("{}: cannot create file: {}", tmp_.string(), std::strerror(errno)));
  // Big arrays go out in few large writes.
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : target_(std::move(other.target_)), tmp_(std::move(other.tmp_)), file_(other.file_) {
  other.file_ = nullptr;
  other.tmp_.clear();
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!tmp_.empty()) {
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void AtomicFile::fail(const std::string& what) {
  if (file_) std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  fs::remove(tmp_, ec);
  tmp_.clear();
  throw Error(fmt::format("{}: {}", target_.string(), what));
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  if (!file_) throw Error(fmt::format("{}: write after commit", target_.string()));
  if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes)
    fail(fmt::format("write failed (disk full?): {}", std::strerror(errno)));
}

void AtomicFile::commit() {
  if (!file_) throw Error(fmt::format("{}: committed twice", target_.string()));
  const bool flushed = std::fflush(file_) == 0;
  const int flush_errno = errno;  // the cause, before fclose can overwrite it
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed)
    fail(fmt::format("write failed on close (disk full?): {}", std::strerror(flushed ? errno : flush_errno)));
  std::error_code ec;
  fs::rename(tmp_, target_, ec);
  if (ec) fail(fmt::format("cannot rename {} into place: {}", tmp_.string(), ec.message()));
  tmp_.clear();
}

void write_file_atomically(const fs::path& file, std::string_view text) {
  AtomicFile out(file);
  out.write(text);
  out.commit();
}

// --- header ---------------------------------------------------------------------------------------

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;

std::int64_t checked_numel(const std::vector<std::int64_t>& shape, const fs::path& file) {
  std::int64_t n = 1;
  for (const auto s : shape) {
    if (s < 0) throw InputError(file.string(), 0, "shape", fmt::format("negative dimension {}", s));
    if (s != 0 && n > std::numeric_limits<std::int64_t>::max() / 8 / s)
      throw InputError(file.string(), 0, "shape", "array size overflows");
    n *= s;
  }
  return n;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

/// A parser for the Python dict literal of a .npy header: string keys; string, bool and int-tuple values.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const fs::path& file) : s_(text), file_(file) {}

  NpyHeader parse() {
    std::optional<std::string> descr;
    std::optional<bool> fortran;
    std::optional<std::vector<std::int64_t>> shape;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        descr = string_literal();
      } else if (key == "fortran_order") {
        fortran = boolean();
      } else if (key == "shape") {
        shape = tuple();
      } else {
        bad(fmt::format("unexpected key '{}'", key));
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != '}') bad("expected ',' or '}'");
    }
    ++pos_;
    skip_ws();
    if (pos_ != s_.size()) bad("text after the closing '}'");
    if (!descr || !fortran || !shape) bad("the header needs 'descr', 'fortran_order' and 'shape'");

    NpyHeader h;
    if (*descr == "<f4") {
      h.dtype = NpyDtype::kFloat32;
    } else if (*descr == "<i8") {
      h.dtype = NpyDtype::kInt64;
    } else {
      throw InputError(file_.string(), 0, "descr",
                       fmt::format("dtype '{}' is not supported (expected '<f4' float32 or '<i8' int64)", *descr));
    }
    if (*fortran) throw InputError(file_.string(), 0, "fortran_order", "Fortran-order arrays are not supported");
    h.shape = *shape;
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) {
    throw InputError(file_.string(), 0, "header", fmt::format("malformed .npy header ({}) at character {}: {}", what,
                                                              pos_, std::string(s_)));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(fmt::format("expected '{}'", c));
    ++pos_;
  }
  std::string string_literal() {
    skip_ws();
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad("expected a quoted string");
    const auto end = s_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) bad("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_ws();
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::vector<std::int64_t> tuple() {
    expect('(');
    std::vector<std::int64_t> out;
    while (true) {
      skip_ws();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') bad("expected a non-negative integer in the shape");
      std::int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10) bad("dimension too large");
        v = 10 * v + (peek() - '0');
        ++pos_;
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      out.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        bad("expected ',' or ')' in the shape");
      }
    }
    ++pos_;
    return out;
  }

  std::string_view s_;
  const fs::path& file_;
  std::size_t pos_ = 0;
};

}  // namespace

const char* npy_descr(NpyDtype dtype) { return dtype == NpyDtype::kFloat32 ? "<f4" : "<i8"; }

std::size_t npy_item_size(NpyDtype dtype) { return dtype == NpyDtype::kFloat32 ? 4 : 8; }

std::int64_t NpyHeader::numel() const {
  std::int64_t n = 1;
  for (const auto s : shape) n *= s;
  return n;
}

std::string npy_header(NpyDtype dtype, const std::vector<std::int64_t>& shape) {
  std::string dict =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", npy_descr(dtype), shape_text(shape));
  // magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64.
  const std::size_t unpadded = kMagicSize + 4 + dict.size() + 1;
  const std::size_t total = (unpadded + 63) / 64 * 64;
  dict.append(total - unpadded, ' ');
  dict.push_back('\n');
  const auto len = static_cast<std::uint16_t>(dict.size());
  std::string out(kMagic, kMagicSize);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>(len >> 8));
  out += dict;
  return out;
}

NpyHeader read_npy_header(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file.string(), 0, "", "cannot open .npy file");
  char pre[10];
  in.read(pre, 10);
  if (in.gcount() < 8 || std::memcmp(pre, kMagic, kMagicSize) != 0)
    throw InputError(file.string(), 0, "magic", "not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(pre[6]);
  std::uint64_t header_len = 0;
  std::uint64_t prefix = 0;
  if (major == 1) {
    if (in.gcount() < 10) throw InputError(file.string(), 0, "header", "truncated .npy header");
    header_len = static_cast<unsigned char>(pre[8]) | (static_cast<unsigned>(static_cast<unsigned char>(pre[9])) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    char more[2];
    in.read(more, 2);
    if (in.gcount() < 2) throw InputError(file.string(), 0, "header", "truncated .npy header");
    const unsigned char b[4] = {static_cast<unsigned char>(pre[8]), static_cast<unsigned char>(pre[9]),
                                static_cast<unsigned char>(more[0]), static_cast<unsigned char>(more[1])};
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint64_t>(b[3]) << 24);
    prefix = 12;
  } else {
    throw InputError(file.string(), 0, "version", fmt::format(".npy format version {} is not supported", major));
  }
  if (header_len > (1u << 24)) throw InputError(file.string(), 0, "header", "implausible header length");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  if (static_cast<std::uint64_t>(in.gcount()) != header_len)
    throw InputError(file.string(), 0, "header", "truncated .npy header");

  NpyHeader h = HeaderParser(text, file).parse();
  h.data_offset = prefix + header_len;
  const std::int64_t n = checked_numel(h.shape, file);
  const std::uint64_t expected = h.data_offset + static_cast<std::uint64_t>(n) * npy_item_size(h.dtype);
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) throw InputError(file.string(), 0, "", "cannot stat .npy file: " + ec.message());
  if (size != expected)
    throw InputError(file.string(), 0, "shape",
                     fmt::format("shape {} {} needs {} bytes of data but the file holds {} ({})", shape_text(h.shape),
                                 npy_descr(h.dtype), expected - h.data_offset,
                                 size >= h.data_offset ? size - h.data_offset : 0,
                                 size < expected ? "truncated" : "trailing bytes"));
  return h;
}

void read_npy_data(const fs::path& file, const NpyHeader& header, NpyDtype expected, void* dst) {
  if (header.dtype != expected)
    throw InputError(file.string(), 0, "descr",
                     fmt::format("dtype is '{}', expected '{}'", npy_descr(header.dtype), npy_descr(expected)));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file.string(), 0, "", "cannot open .npy file");
  in.seekg(static_cast<std::streamoff>(header.data_offset));
  auto* out = static_cast<char*>(dst);
  std::uint64_t left = header.nbytes();
  constexpr std::uint64_t kChunk = 1ull << 26;
  while (left > 0) {
    const auto n = std::min(left, kChunk);
    in.read(out, static_cast<std::streamsize>(n));
    if (static_cast<std::uint64_t>(in.gcount()) != n)
      throw InputError(file.string(), 0, "", "read failed (file truncated while reading?)");
    out += n;
    left -= n;
  }
}

namespace {
template <typename T>
NpyArray<T> read_whole(const fs::path& file, NpyDtype dtype) {
  const NpyHeader h = read_npy_header(file);
  if (h.dtype != dtype)
    throw InputError(file.string(), 0, "descr",
                     fmt::format("dtype is '{}', expected '{}'", npy_descr(h.dtype), npy_descr(dtype)));
  NpyArray<T> out;
  out.shape = h.shape;
  out.data.resize(static_cast<std::size_t>(h.numel()));
  read_npy_data(file, h, dtype, out.data.data());
  return out;
}
}  // namespace

NpyArray<float> read_npy_float32(const fs::path& file) { return read_whole<float>(file, NpyDtype::kFloat32); }

NpyArray<std::int64_t> read_npy_int64(const fs::path& file) {
  return read_whole<std::int64_t>(file, NpyDtype::kInt64);
}

// --- writing --------------------------------------------------------------------------------------

NpyWriter::NpyWriter(const fs::path& file, NpyDtype dtype, std::vector<std::int64_t> shape)
    : out_(file), dtype_(dtype), shape_(std::move(shape)) {
  numel_ = checked_numel(shape_, file);
  out_.write(npy_header(dtype_, shape_));
}

void NpyWriter::append(NpyDtype dtype, const void* data, std::int64_t count) {
  if (dtype != dtype_)
    throw Error(fmt::format("{}: writing {} data into a {} array", out_.target().string(), npy_descr(dtype),
                            npy_descr(dtype_)));
  if (count < 0 || written_ + count > numel_)
    throw Error(fmt::format("{}: {} elements written into an array of {}", out_.target().string(),
                            written_ + count, numel_));
  out_.write(data, static_cast<std::size_t>(count) * npy_item_size(dtype));
  written_ += count;
}

void NpyWriter::write(const float* data, std::int64_t count) { append(NpyDtype::kFloat32, data, count); }

void NpyWriter::write(const std::int64_t* data, std::int64_t count) { append(NpyDtype::kInt64, data, count); }

void NpyWriter::commit() {
  if (written_ != numel_)
    throw Error(fmt::format("{}: only {} of {} elements were written", out_.target().string(), written_, numel_));
  out_.commit();
}

void write_npy(const fs::path& file, const float* data, const std::vector<std::int64_t>& shape) {
  NpyWriter w(file, NpyDtype::kFloat32, shape);
  w.write(data, w.numel());
  w.commit();
}

void write_npy(const fs::path& file, const std::int64_t* data, const std::vector<std::int64_t>& shape) {
  NpyWriter w(file, NpyDtype::kInt64, shape);
  w.write(data, w.numel());
  w.commit();
}

}  // namespace llm4sbr
