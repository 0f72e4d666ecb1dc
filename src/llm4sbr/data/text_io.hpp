// The text and CSV toolkit of the dataset readers: whole-file reads, line and field splitting, UTF-8
// checks and Latin-1 conversion, integer parsing with errors that name the file, line and field, and an
// RFC 4180 CSV reader whose columns are found by header name. Every error is an InputError naming the
// file, the 1-based line and the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llm4sbr::data::textio {

// ---------------------------------------------------------------------------------------------
// Small text utilities

/// The whole file as bytes. Throws InputError for a missing or unreadable file.
std::string read_text_file(const std::filesystem::path& path);

/// Line-aligned files must not grow an empty last "user" from a trailing blank line.
std::string_view without_trailing_blank_lines(std::string_view text);

/// Removes a leading UTF-8 byte order mark.
void strip_utf8_bom(std::string& text);

/// Splits `s` at every `sep` into `out` (cleared first); empty fields are kept.
void split_str(std::string_view s, std::string_view sep, std::vector<std::string_view>& out);

/// split_str with a one-character separator.
void split_char(std::string_view s, char sep, std::vector<std::string_view>& out);

/// Splits on runs of spaces and tabs (empty tokens are dropped).
void split_ws(std::string_view s, std::vector<std::string_view>& out);

/// `s` without leading and trailing spaces and tabs.
std::string_view trim(std::string_view s);

/// Byte offset of the first invalid UTF-8 sequence in `s`, or npos if `s` is valid UTF-8
/// (overlong forms, surrogates and code points above U+10FFFF are invalid).
std::size_t utf8_invalid_at(std::string_view s);

/// Throws InputError naming the byte and its offset unless `s` is valid UTF-8.
void check_utf8(std::string_view s, const std::string& file, std::size_t line, const std::string& field);

/// ISO-8859-1 bytes as UTF-8.
std::string latin1_to_utf8(std::string_view s);

/// MovieLens ships ISO-8859-1; a file that a user already re-encoded is kept as it is, because
/// Latin-1 text with accents is practically never valid UTF-8 by accident.
std::string decode_latin1_file(const std::string& raw);

/// The integer in `s` (spaces and tabs around it allowed); InputError "expected WHAT, found ..." otherwise.
std::int64_t parse_int(std::string_view s, const std::string& file, std::size_t line, const std::string& field,
                       const char* what = "an integer");

/// Throws InputError unless `s` is a number (spaces and tabs around it allowed).
void check_number(std::string_view s, const std::string& file, std::size_t line, const std::string& field);

/// The field named in a "short row" error: the first one that is missing.
[[noreturn]] void throw_field_count(const std::string& file, std::size_t line, const std::vector<std::string>& names,
                                    std::size_t found);

/// Splits a buffer into lines ('\n' or "\r\n"), numbering them from 1.
class LineCursor {
 public:
  explicit LineCursor(std::string_view text) : text_(text) {}
  bool next(std::string_view& line) {
    if (pos_ >= text_.size()) return false;
    std::size_t end = text_.find('\n', pos_);
    if (end == std::string_view::npos) end = text_.size();
    line = text_.substr(pos_, end - pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos_ = end + 1;
    ++line_no_;
    return true;
  }
  std::size_t line_no() const { return line_no_; }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
  std::size_t line_no_ = 0;
};

// ---------------------------------------------------------------------------------------------
// CSV (RFC 4180: ',' separated, '"' quoting with "" escapes, quoted fields may span lines)

class CsvCursor {
 public:
  CsvCursor(std::string_view text, std::string file) : text_(text), file_(std::move(file)) {}

  /// Names used for the field in quoting errors (column k otherwise).
  void set_names(std::vector<std::string> names) { names_ = std::move(names); }

  /// Reads the next record; empty lines are skipped. line() is where the record starts.
  bool next(std::vector<std::string>& fields);

  std::size_t line() const { return record_line_; }
  const std::string& file() const { return file_; }

 private:
  /// The name of field k in errors: its header name, else "column k+1".
  std::string name(std::size_t k) const;

  std::string_view text_;
  std::string file_;
  std::vector<std::string> names_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t record_line_ = 0;
};

/// A CSV file with a header row; columns are found by name.
class CsvTable {
 public:
  explicit CsvTable(const std::filesystem::path& path);

  /// Index of a column, or -1.
  int find(std::string_view name) const {
    for (std::size_t k = 0; k < header_.size(); ++k)
      if (header_[k] == name) return static_cast<int>(k);
    return -1;
  }
  /// Index of a column; InputError naming the header when it is missing.
  int require(std::string_view name) const;

  bool next(std::vector<std::string>& fields) { return cursor_->next(fields); }
  std::size_t line() const { return cursor_->line(); }
  const std::string& file() const { return file_; }
  const std::vector<std::string>& header() const { return header_; }

  /// Checks the field count and the encoding of a record.
  void check_row(const std::vector<std::string>& fields) const {
    if (fields.size() != header_.size()) throw_field_count(file_, line(), header_, fields.size());
    for (std::size_t k = 0; k < fields.size(); ++k) check_utf8(fields[k], file_, line(), header_[k]);
  }

 private:
  std::string file_;
  std::string text_;
  std::unique_ptr<CsvCursor> cursor_;
  std::vector<std::string> header_;
};

}  // namespace llm4sbr::data::textio
