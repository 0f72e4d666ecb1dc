#include "llm4sbr/data/dataset.hpp"

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::data {

const std::vector<Sample>& PreparedDataset::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "valid") return valid;
  if (name == "test") return test;
  throw ConfigError("unknown split '" + name + "' (expected train, valid or test)");
}

}  // namespace llm4sbr::data
