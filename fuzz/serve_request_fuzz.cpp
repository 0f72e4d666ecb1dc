// libFuzzer target: the body of `llm4sbr serve`'s POST /v1/recommend, as the server reads it (JSON, then
// parse_recommend_request). The service may refuse a body only with a RequestError (its 4xx naming the field);
// anything else that escapes would be a 500, and terminates the target.
#include <cstdint>

#include <nlohmann/json.hpp>

#include "llm4sbr/serve/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto body = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;  // the server answers 400 "not valid JSON" before parsing fields
  try {
    const auto request = llm4sbr::serve::parse_recommend_request(body, 12101);
    (void)request;
  } catch (const llm4sbr::serve::RequestError&) {
  }
  return 0;
}
