#include "llm4sbr/core/error.hpp"

#include <fmt/format.h>

namespace llm4sbr {

namespace {
std::string format_input_error(const std::string& file, std::size_t line, const std::string& field,
                               const std::string& what) {
  std::string where = line > 0 ? fmt::format("{}:{}", file, line) : file;
  if (field.empty()) return fmt::format("{}: {}", where, what);
  return fmt::format("{}: field '{}': {}", where, field, what);
}
}  // namespace

InputError::InputError(std::string file, std::size_t line, std::string field, const std::string& what)
    : Error(format_input_error(file, line, field, what)),
      file_(std::move(file)),
      line_(line),
      field_(std::move(field)) {}

}  // namespace llm4sbr
