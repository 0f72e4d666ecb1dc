#include "llm4sbr/embed/openai_encoder.hpp"

#include <fmt/format.h>

#include <cmath>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"

namespace llm4sbr::embed {

namespace fs = std::filesystem;

OpenAiEncoderOptions OpenAiEncoderOptions::from_config(const std::vector<std::string>& urls, const Config& settings) {
  OpenAiEncoderOptions o;
  o.urls = urls;
  o.model = settings.get<std::string>("api_model", o.model);
  o.batch = settings.get<std::int64_t>("batch", o.batch);
  if (o.batch < 1) throw ConfigError("config key 'embed.batch' must be >= 1");
  o.max_chars = settings.get<std::int64_t>("max_chars", o.max_chars);
  if (o.max_chars < 0) throw ConfigError("config key 'embed.max_chars' must be >= 0 (0 = no limit)");
  o.http = http::PoolOptions::from_config(settings, "http");
  return o;
}

OpenAiEncoder::OpenAiEncoder(OpenAiEncoderOptions options)
    : options_(std::move(options)), pool_(std::make_unique<http::EndpointPool>(options_.urls, options_.http)) {
  if (options_.dim == 0) options_.dim = encode({"dimension probe"}).size(1);
}

std::string OpenAiEncoder::name() const {
  return fmt::format("openai:{}@{} (d={})", options_.model.empty() ? "server-default" : options_.model,
                     pool_->urls().front(), options_.dim);
}

namespace {

// The first `max_bytes` bytes of `text`, never cutting a UTF-8 sequence in two (0 = all of it).
std::string clip_utf8(const std::string& text, std::int64_t max_bytes) {
  if (max_bytes <= 0 || static_cast<std::int64_t>(text.size()) <= max_bytes) return text;
  auto end = static_cast<std::size_t>(max_bytes);
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;  // continuation byte
  return text.substr(0, end);
}

}  // namespace

torch::Tensor OpenAiEncoder::encode(const std::vector<std::string>& texts) {
  return encode_each_distinct_once(texts, [this](const std::vector<std::string>& distinct) { return encode_distinct(distinct); });
}

torch::Tensor OpenAiEncoder::encode_distinct(const std::vector<std::string>& texts) {
  // Only non-empty texts are sent (servers reject empty inputs); the others keep a zero row.
  std::vector<std::size_t> sent;
  for (std::size_t i = 0; i < texts.size(); ++i)
    if (texts[i].find_first_not_of(" \t\r\n") != std::string::npos) sent.push_back(i);
  std::vector<std::string> bodies;
  for (std::size_t lo = 0; lo < sent.size(); lo += static_cast<std::size_t>(options_.batch)) {
    nlohmann::json input = nlohmann::json::array();
    for (std::size_t k = lo; k < std::min(sent.size(), lo + static_cast<std::size_t>(options_.batch)); ++k) input.push_back(clip_utf8(texts[sent[k]], options_.max_chars));
    nlohmann::json body = {{"input", std::move(input)}, {"encoding_format", "float"}};
    if (!options_.model.empty()) body["model"] = options_.model;
    bodies.push_back(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  std::vector<std::vector<float>> rows(texts.size());
  pool_->post_all("embeddings", bodies, [&](std::size_t b, const http::Response& r) {
    const std::size_t lo = b * static_cast<std::size_t>(options_.batch);
    const std::size_t n = std::min(sent.size(), lo + static_cast<std::size_t>(options_.batch)) - lo;
    try {
      const auto& data = r.body.at("data");
      if (data.size() != n) throw Error(fmt::format("{} embeddings for {} inputs", data.size(), n));
      for (const auto& item : data) {
        const auto k = item.at("index").get<std::size_t>();
        if (k >= n) throw Error(fmt::format("index {} out of range", k));
        rows[sent[lo + k]] = item.at("embedding").get<std::vector<float>>();
      }
    } catch (const std::exception& e) {
      throw Error(fmt::format("{}/embeddings: an answer of the wrong shape ({}): {}", r.endpoint, e.what(),
                              r.body.dump().substr(0, 300)));
    }
  });
  std::int64_t dim = options_.dim;
  for (const auto& row : rows)
    if (!row.empty()) {
      if (dim == 0) dim = static_cast<std::int64_t>(row.size());
      if (static_cast<std::int64_t>(row.size()) != dim)
        throw Error(fmt::format("{}: an embedding of width {} where {} was expected (a different model behind one of "
                                "the URLs?)",
                                name(), row.size(), dim));
    }
  auto out = torch::zeros({static_cast<std::int64_t>(texts.size()), dim}, torch::kFloat32);
  auto acc = out.accessor<float, 2>();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    double norm = 0;
    for (float v : rows[i]) norm += static_cast<double>(v) * v;
    const double inv = norm > 0 ? 1.0 / std::sqrt(norm) : 0.0;
    for (std::int64_t k = 0; k < static_cast<std::int64_t>(rows[i].size()); ++k)
      acc[static_cast<std::int64_t>(i)][k] = static_cast<float>(rows[i][static_cast<std::size_t>(k)] * inv);
  }
  return out;
}

void OpenAiEncoder::save(const fs::path& dir) const {
  fs::create_directories(dir);
  const nlohmann::json meta = {{"kind", "openai"},          {"name", name()},
                               {"urls", options_.urls},     {"model", options_.model},
                               {"batch", options_.batch}, {"max_chars", options_.max_chars},   {"dim", options_.dim},
                               {"http", options_.http}};
  write_file_atomically(dir / "encoder.json", meta.dump(2) + "\n");
}

std::unique_ptr<OpenAiEncoder> OpenAiEncoder::from_metadata(const nlohmann::json& meta) {
  OpenAiEncoderOptions o;
  o.urls = meta.at("urls").get<std::vector<std::string>>();
  o.model = meta.at("model").get<std::string>();
  o.batch = meta.at("batch").get<std::int64_t>();
  o.max_chars = meta.value("max_chars", o.max_chars);
  o.dim = meta.at("dim").get<std::int64_t>();
  o.http = meta.at("http").get<http::PoolOptions>();
  return std::make_unique<OpenAiEncoder>(std::move(o));
}

}  // namespace llm4sbr::embed
