#include "llm4sbr/data/text_io.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::data::textio {

namespace fs = std::filesystem;

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(path.string(), 0, "", "file not found");
    throw InputError(path.string(), 0, "", "cannot open file: " + std::string(std::strerror(errno)));
  }
  std::string text;
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  if (size < 0) throw InputError(path.string(), 0, "", "cannot determine the file size");
  text.resize(static_cast<std::size_t>(size));
  in.seekg(0, std::ios::beg);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (!in) throw InputError(path.string(), 0, "", "read error");
  return text;
}

/// Line-aligned files must not grow an empty last "user" from a trailing blank line.
std::string_view without_trailing_blank_lines(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  return text;
}

void strip_utf8_bom(std::string& text) {
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
}

void split_str(std::string_view s, std::string_view sep, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  while (true) {
    const std::size_t p = s.find(sep, start);
    if (p == std::string_view::npos) {
      out.push_back(s.substr(start));
      return;
    }
    out.push_back(s.substr(start, p - start));
    start = p + sep.size();
  }
}

void split_char(std::string_view s, char sep, std::vector<std::string_view>& out) {
  split_str(s, std::string_view(&sep, 1), out);
}

/// Splits on runs of spaces and tabs (empty tokens are dropped).
void split_ws(std::string_view s, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i >= n) break;
    std::size_t j = i;
    while (j < n && s[j] != ' ' && s[j] != '\t') ++j;
    out.push_back(s.substr(i, j - i));
    i = j;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// Byte offset of the first invalid UTF-8 sequence in `s`, or npos if `s` is valid UTF-8
/// (overlong forms, surrogates and code points above U+10FFFF are invalid).
std::size_t utf8_invalid_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned char d = p[i + k];
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += len;
  }
  return std::string_view::npos;
}

void check_utf8(std::string_view s, const std::string& file, std::size_t line, const std::string& field) {
  const std::size_t at = utf8_invalid_at(s);
  if (at != std::string_view::npos)
    throw InputError(file, line, field,
                     fmt::format("invalid UTF-8 (byte 0x{:02X} at offset {}); the file must be UTF-8",
                                 static_cast<unsigned>(static_cast<unsigned char>(s[at])), at));
}

std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

/// MovieLens ships ISO-8859-1; a file that a user already re-encoded is kept as it is, because
/// Latin-1 text with accents is practically never valid UTF-8 by accident.
std::string decode_latin1_file(const std::string& raw) {
  const bool has_high = std::any_of(raw.begin(), raw.end(), [](char c) { return (c & 0x80) != 0; });
  if (!has_high || utf8_invalid_at(raw) == std::string_view::npos) return raw;
  return latin1_to_utf8(raw);
}

std::int64_t parse_int(std::string_view s, const std::string& file, std::size_t line, const std::string& field,
                       const char* what) {
  const std::string_view t = trim(s);
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || ptr != t.data() + t.size())
    throw InputError(file, line, field, fmt::format("expected {}, found '{}'", what, s));
  return v;
}

void check_number(std::string_view s, const std::string& file, std::size_t line, const std::string& field) {
  const std::string_view t = trim(s);
  double v = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || ptr != t.data() + t.size())
    throw InputError(file, line, field, fmt::format("expected a number, found '{}'", s));
}

/// The field named in a "short row" error: the first one that is missing.
[[noreturn]] void throw_field_count(const std::string& file, std::size_t line,
                                    const std::vector<std::string>& names, std::size_t found) {
  const std::size_t expected = names.size();
  if (found < expected)
    throw InputError(file, line, names[found],
                     fmt::format("expected {} fields, found {} (short row)", expected, found));
  throw InputError(file, line, names.back(),
                   fmt::format("expected {} fields, found {} (too many fields; unquoted separator?)",
                               expected, found));
}

// ---------------------------------------------------------------------------------------------
// CSV

bool CsvCursor::next(std::vector<std::string>& fields) {
  const std::size_t n = text_.size();
  while (pos_ < n && (text_[pos_] == '\n' || text_[pos_] == '\r')) {
    if (text_[pos_] == '\n') ++line_;
    ++pos_;
  }
  if (pos_ >= n) return false;
  fields.clear();
  record_line_ = line_;
  while (true) {
    std::string& field = fields.emplace_back();
    if (pos_ < n && text_[pos_] == '"') {
      ++pos_;
      while (true) {
        const std::size_t q = text_.find('"', pos_);
        if (q == std::string_view::npos)
          throw InputError(file_, record_line_, name(fields.size() - 1), "unterminated quoted field");
        const std::string_view part = text_.substr(pos_, q - pos_);
        line_ += static_cast<std::size_t>(std::count(part.begin(), part.end(), '\n'));
        field.append(part);
        pos_ = q + 1;
        if (pos_ < n && text_[pos_] == '"') {
          field.push_back('"');
          ++pos_;
          continue;
        }
        break;
      }
      if (pos_ < n && text_[pos_] == '\r' && (pos_ + 1 == n || text_[pos_ + 1] == '\n')) ++pos_;
      if (pos_ < n && text_[pos_] != ',' && text_[pos_] != '\n')
        throw InputError(file_, line_, name(fields.size() - 1),
                         "unexpected character after the closing quote (a quote inside a quoted field "
                         "must be doubled)");
    } else {
      std::size_t end = pos_;
      while (end < n && text_[end] != ',' && text_[end] != '\n') ++end;
      std::string_view part = text_.substr(pos_, end - pos_);
      if (!part.empty() && part.back() == '\r' && (end >= n || text_[end] == '\n')) part.remove_suffix(1);
      field.assign(part);
      pos_ = end;
    }
    if (pos_ >= n) break;
    if (text_[pos_] == ',') {
      ++pos_;
      continue;
    }
    // '\n': end of record
    ++pos_;
    ++line_;
    break;
  }
  return true;
}

CsvTable::CsvTable(const fs::path& path) : file_(path.string()), text_(read_text_file(path)) {
  strip_utf8_bom(text_);
  cursor_ = std::make_unique<CsvCursor>(text_, file_);
  if (!cursor_->next(header_)) throw InputError(file_, 1, "", "empty file: expected a header row");
  for (std::size_t k = 0; k < header_.size(); ++k) {
    check_utf8(header_[k], file_, 1, fmt::format("column {}", k + 1));
    header_[k] = std::string(trim(header_[k]));
  }
  cursor_->set_names(header_);
}

std::string CsvCursor::name(std::size_t k) const {
  return k < names_.size() ? names_[k] : fmt::format("column {}", k + 1);
}

int CsvTable::require(std::string_view name) const {
  const int k = find(name);
  if (k < 0)
    throw InputError(file_, 1, std::string(name),
                     fmt::format("missing column '{}' in the header ({})", name, fmt::join(header_, ",")));
  return k;
}

}  // namespace llm4sbr::data::textio
