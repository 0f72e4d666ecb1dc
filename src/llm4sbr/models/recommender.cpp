#include "llm4sbr/models/recommender.hpp"

#include <fmt/format.h>

#include <map>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::models {

PlainRecommenderImpl::PlainRecommenderImpl(SessionEncoder encoder) : encoder_(std::move(encoder)) {
  register_module("encoder", encoder_);
}

ForwardOutput RecommenderImpl::forward_unscored(const SessionBatch& /*batch*/) {
  throw Error(fmt::format("{}: its scores are not a product with one item table (no forward_unscored)", label()));
}

ForwardOutput PlainRecommenderImpl::forward(const SessionBatch& batch) { return pass(batch, true); }

ForwardOutput PlainRecommenderImpl::forward_unscored(const SessionBatch& batch) {
  if (!linear_scorer().defined()) return RecommenderImpl::forward_unscored(batch);
  return pass(batch, false);
}

ForwardOutput PlainRecommenderImpl::pass(const SessionBatch& batch, bool score) {
  SessionRepresentation rep = encoder_->encode(batch);
  ForwardOutput out{torch::Tensor(), rep.aux_loss, torch::Tensor(), encoder_->readout(rep)};
  if (score) out.scores = encoder_->score(out.session, rep);
  return out;
}

std::string PlainRecommenderImpl::label() const { return display_name(encoder_->name()); }

std::string display_name(const std::string& model) {
  static const std::map<std::string, std::string> names = {
      {"srgnn", "SR-GNN"},   {"tagnn", "TAGNN"},     {"gcegnn", "GCE-GNN"},
      {"dhcn", "S²-DHCN"},   {"gru4rec", "GRU4Rec"}, {"sasrec", "SASRec"},
  };
  auto it = names.find(model);
  return it == names.end() ? model : it->second;
}

}  // namespace llm4sbr::models
