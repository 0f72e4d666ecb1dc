#include "llm4sbr/models/recommender.hpp"

#include <map>

namespace llm4sbr::models {

PlainRecommenderImpl::PlainRecommenderImpl(SessionEncoder encoder) : encoder_(std::move(encoder)) {
  register_module("encoder", encoder_);
}

ForwardOutput PlainRecommenderImpl::forward(const SessionBatch& batch) {
  SessionRepresentation rep = encoder_->encode(batch);
  return {encoder_->score(encoder_->readout(rep), rep), rep.aux_loss};
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
