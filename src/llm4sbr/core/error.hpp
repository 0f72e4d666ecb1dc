// Errors thrown by llm4sbr. Every error about user input names where the problem is, so that a user can
// open the file at the right line instead of guessing.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace llm4sbr {

/// Base class of every error llm4sbr throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Bad input data: a malformed row, an unknown id, a bad encoding, a missing file.
/// The message reads "FILE:LINE: field 'FIELD': WHAT" (line 0 = the file as a whole).
class InputError : public Error {
 public:
  InputError(std::string file, std::size_t line, std::string field, const std::string& what);

  const std::string& file() const noexcept { return file_; }
  std::size_t line() const noexcept { return line_; }
  const std::string& field() const noexcept { return field_; }

 private:
  std::string file_;
  std::size_t line_;
  std::string field_;
};

/// A bad setting: unknown config key, value of the wrong type or out of range.
class ConfigError : public Error {
 public:
  using Error::Error;
};

}  // namespace llm4sbr
