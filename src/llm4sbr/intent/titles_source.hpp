// The LLM-free intent source: instead of asking an LLM what a session is about, take the titles of the
// items the view looks at. It gives every pipeline stage after the LLM (encode, localize, train) real
// input without a model, and it is the "no LLM" baseline of the intent files.
#pragma once

#include <string>
#include <vector>

#include "llm4sbr/data/dataset.hpp"

namespace llm4sbr::intent {

/// The views the titles source knows: "long" and "normal" (every item of the prefix, oldest first) and
/// "short" (the last item).
std::vector<std::string> title_views();

/// The text of `view` for each sample, in sample order: the titles of the items in the view's window
/// joined with "; ". Items with an empty title are skipped; if none is left the text is empty (it
/// encodes to a zero vector and localizes to a zero intent). Throws ConfigError for an unknown view and
/// InputError naming the sample for an item id outside 1..N.
std::vector<std::string> view_texts(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                    const std::string& view);

}  // namespace llm4sbr::intent
