// The model being served, and its replacement without downtime (issue 12, "Operations"): a reload loads the
// new checkpoint beside the old one while requests keep flowing, then swaps it in; a request holds the
// service it started with to the end, so no request fails or mixes two models. A checkpoint that fails to
// load leaves the old model serving.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "llm4sbr/serve/service.hpp"

namespace llm4sbr::serve {

/// Thread-safe.
class ServiceSlot {
 public:
  /// Builds a Service from a checkpoint path ("" = the one the server was started with). Throws on failure.
  using Loader = std::function<std::shared_ptr<const Service>(const std::string& checkpoint)>;

  /// Loads the first model (version 1) now; throws what `load` throws.
  explicit ServiceSlot(Loader load);

  /// The service to answer a request with: kept alive by the caller even if a reload swaps it out.
  std::shared_ptr<const Service> current() const;
  /// 1 for the first model, +1 for each successful reload.
  std::int64_t version() const;

  struct Reloaded {
    bool ok = false;
    std::int64_t version = 0;  ///< serving now
    std::string error;         ///< why the new checkpoint was refused (the old model serves on)
  };
  /// Loads `checkpoint` ("" = the server's own, re-read: a retrained best.pt) and swaps it in. One reload at a
  /// time: throws RequestError(409) while another runs.
  Reloaded reload(const std::string& checkpoint = "");

 private:
  Loader load_;
  mutable std::mutex mutex_;  ///< guards current_ and version_
  std::mutex reloading_;      ///< held for a whole reload
  std::shared_ptr<const Service> current_;
  std::int64_t version_ = 1;
};

}  // namespace llm4sbr::serve
