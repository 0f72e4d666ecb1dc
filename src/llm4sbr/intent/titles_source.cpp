#include "llm4sbr/intent/titles_source.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::intent {

std::vector<std::string> title_views() { return {"long", "short", "normal"}; }

std::vector<std::string> view_texts(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                    const std::string& view) {
  const bool last_only = view == "short";
  if (!last_only && view != "long" && view != "normal")
    throw ConfigError(fmt::format("unknown intent view '{}' (known: {})", view, fmt::join(title_views(), ", ")));
  std::vector<std::string> out;
  out.reserve(samples.size());
  for (const auto& s : samples) {
    std::string text;
    const std::size_t first = last_only && !s.prefix.empty() ? s.prefix.size() - 1 : 0;
    for (std::size_t p = first; p < s.prefix.size(); ++p) {
      const auto id = s.prefix[p];
      if (id < 1 || id > ds.n_items())
        throw InputError(fmt::format("{} sample {}", ds.name, s.id), 0, "prefix",
                         fmt::format("item id {} outside 1..{}", id, ds.n_items()));
      const auto& title = ds.items[static_cast<std::size_t>(id - 1)].title;
      if (title.empty()) continue;
      if (!text.empty()) text += "; ";
      text += title;
    }
    out.push_back(std::move(text));
  }
  return out;
}

}  // namespace llm4sbr::intent
