#include "llm4sbr/train/distributed.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/core/error.hpp"

// c10d's Gloo process group is compiled only where the Gloo headers are (Debian: libgloo-dev; PyTorch's
// wheels and archives ship them): its declarations are guarded by USE_C10D_GLOO, which LibTorch's own build
// defines. Without them, joining a job is a ConfigError that says so.
#if __has_include(<gloo/config.h>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#define LLM4SBR_HAVE_GLOO 1
#endif

namespace llm4sbr::train {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// An integer variable of the job's environment in [lo, hi]; `fallback` when unset (< lo: required).
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    if (fallback < lo) throw ConfigError(fmt::format("${} is not set: a training job needs it (torchrun sets it)", name));
    return fallback;
  }
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    throw ConfigError(fmt::format("${} = '{}' must be an integer in [{}, {}]", name, v, lo, hi));
  return static_cast<int>(x);
}

std::string reason_of(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  return torch_error ? torch_error->what_without_backtrace() : e.what();
}

}  // namespace

struct Distributed::Group {
#ifdef LLM4SBR_HAVE_GLOO
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
  std::int64_t main_first_calls = 0;
  std::int64_t checks = 0;
};

Distributed::Distributed() = default;
Distributed::~Distributed() = default;

Distributed& distributed() {
  static Distributed job;
  return job;
}

bool Distributed::join_from_environment(std::chrono::seconds timeout) {
  const int world = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  if (world == 1) {
    if (std::getenv("RANK") && std::string(std::getenv("RANK")) != "0")
      throw ConfigError(fmt::format("$RANK = {} but $WORLD_SIZE is not set (or 1): set both, as torchrun does",
                                    std::getenv("RANK")));
    return false;
  }
  const int rank = env_int("RANK", -1, 0, world - 1);
  const int local_rank = env_int("LOCAL_RANK", 0, 0, world - 1);  // its GPU; 0 on a machine of one rank
  const std::string address = env_or("MASTER_ADDR", "");
  if (address.empty()) throw ConfigError("$MASTER_ADDR is not set: a training job needs it (torchrun sets it)");
  const int port = env_int("MASTER_PORT", -1, 1, 65535);
#ifndef LLM4SBR_HAVE_GLOO
  (void)local_rank, (void)port, (void)timeout;
  throw ConfigError(fmt::format("WORLD_SIZE = {} asks for distributed training, but this build has no Gloo (its "
                                "headers were missing: Debian's libgloo-dev); rebuild with them",
                                world));
#else
  // A peer that dies while this rank writes to it must be an error from Gloo that names the collective, not a
  // SIGPIPE that kills this rank too and hides which rank failed first.
  std::signal(SIGPIPE, SIG_IGN);
  auto group = std::make_unique<Group>();
  spdlog::info("distributed: rank {} of {} joining the job at {}:{} (waits up to {} s for every rank: --dist-timeout)",
               rank, world, address, port, timeout.count());
  try {
    // Under torchrun the agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True), and rank 0 is a client too.
    const bool agent_store = env_or("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(port);
    store_options.isServer = rank == 0 && !agent_store;
    store_options.numWorkers = static_cast<std::size_t>(world);
    store_options.waitWorkers = false;
    store_options.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(address, store_options);
    // A restarted torchrun job meets in the same store: each attempt has its own keys.
    group->store = c10::make_intrusive<c10d::PrefixStore>(
        fmt::format("llm4sbr/{}", env_or("TORCHELASTIC_RESTART_COUNT", "0")), tcp);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const auto interfaces = env_or("GLOO_SOCKET_IFNAME", "");
    if (!interfaces.empty()) {
      std::stringstream names(interfaces);
      for (std::string name; std::getline(names, name, ',');)
        if (!name.empty()) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    } else if (address == "127.0.0.1" || address == "localhost") {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = static_cast<int>(options->devices.size()) * 2;
    group->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, rank, world, options);
  } catch (const std::exception& e) {
    throw Error(fmt::format("rank {} of {}: could not join the training job at {}:{} (timeout {} s): {}. Every rank "
                            "must be started with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and rank 0 must be "
                            "able to listen on that port (torchrun's agent hosts it instead, with "
                            "TORCHELASTIC_USE_AGENT_STORE=True: not to be set by hand)",
                            rank, world, address, port, timeout.count(), reason_of(e)));
  }
  group_ = std::move(group);
  rank_ = rank;
  world_size_ = world;
  local_rank_ = local_rank;
  spdlog::info("distributed: rank {} of {} (local rank {}), Gloo, rendezvous at {}:{}", rank, world, local_rank,
               address, port);
  return true;
#endif
}

void Distributed::check(const std::string& what, const std::function<void()>& collective) const {
  try {
    collective();
  } catch (const std::exception& e) {
    throw Error(fmt::format(
        "rank {} of {}: {} failed: {}. Another rank of the job exited or was killed (its log says why), hung past "
        "the job's timeout, or the network failed; running the same command again resumes from the last finished "
        "epoch",
        rank_, world_size_, what, reason_of(e)));
  }
}

void Distributed::check_same(const std::string& what, const std::string& text) {
  if (!active()) return;
#ifdef LLM4SBR_HAVE_GLOO
  const auto prefix = fmt::format("check/{}/", group_->checks++);
  check("comparing the ranks' " + what, [&] {
    group_->store->set(prefix + std::to_string(rank_), std::vector<std::uint8_t>(text.begin(), text.end()));
  });
  for (int r = 0; r < world_size_; ++r) {
    if (r == rank_) continue;
    std::vector<std::uint8_t> theirs;
    check("comparing the ranks' " + what, [&] { theirs = group_->store->get(prefix + std::to_string(r)); });
    const std::string other(theirs.begin(), theirs.end());
    if (other == text) continue;
    // The first line that differs names the setting.
    std::istringstream mine_lines(text), their_lines(other);
    std::string mine_line, their_line;
    while (std::getline(mine_lines, mine_line) && std::getline(their_lines, their_line) && mine_line == their_line) {
    }
    throw ConfigError(fmt::format("rank {} and rank {} of the job have different {}: '{}' here, '{}' there. Every rank "
                                  "must run the same command with the same data",
                                  rank_, r, what, mine_line, their_line));
  }
#else
  (void)what, (void)text;
#endif
}

void Distributed::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  if (!active()) return;
#ifdef LLM4SBR_HAVE_GLOO
  check("all-reduce", [&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};  // the same storage: summed in place
      works.push_back(group_->gloo->allreduce(one));
    }
    for (auto& w : works) w->wait();
  });
#endif
}

void Distributed::broadcast(torch::Tensor& tensor, int root) {
  if (!active()) return;
#ifdef LLM4SBR_HAVE_GLOO
  check("broadcast", [&] {
    std::vector<at::Tensor> one{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    group_->gloo->broadcast(one, options)->wait();
  });
#else
  (void)tensor, (void)root;
#endif
}

std::string Distributed::broadcast_bytes(const std::string& bytes) {
  if (!active()) return bytes;
  auto size = torch::tensor({static_cast<std::int64_t>(bytes.size())}, torch::kInt64);
  broadcast(size);
  const auto n = size.item<std::int64_t>();
  if (n == 0) return {};  // an empty tensor has no storage: memcpy into its null pointer is undefined (UBSan)
  auto data = torch::empty({n}, torch::kUInt8);
  if (is_main()) std::memcpy(data.data_ptr(), bytes.data(), bytes.size());
  broadcast(data);
  return {reinterpret_cast<const char*>(data.data_ptr()), static_cast<std::size_t>(data.numel())};
}

void Distributed::main_first(const std::function<void()>& work) {
  if (!active()) return work();
#ifdef LLM4SBR_HAVE_GLOO
  const auto key = fmt::format("main_first/{}", group_->main_first_calls++);
  if (is_main()) {
    work();
    check("signalling the other ranks", [&] { group_->store->set(key, std::vector<std::uint8_t>{1}); });
  } else {
    spdlog::info("rank {}: waiting for rank 0 to finish the stage first", rank_);
    check("waiting for rank 0", [&] { group_->store->wait({key}, std::chrono::hours(24 * 365)); });
    work();
  }
#endif
}

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters, std::int64_t bucket_bytes)
    : parameters_(std::move(parameters)) {
  if (parameters_.empty()) throw Error("GradientReducer: the model has no parameters");
  std::int64_t in_bucket = bucket_bytes;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const auto& p = parameters_[i];
    if (p.scalar_type() != parameters_.front().scalar_type())
      throw Error("GradientReducer: every parameter must have the same dtype");
    const auto bytes = p.numel() * static_cast<std::int64_t>(p.element_size());
    if (in_bucket + bytes > bucket_bytes && in_bucket > 0) buckets_.emplace_back(), in_bucket = 0;
    buckets_.back().push_back(i);
    in_bucket += bytes;
    bytes_ += bytes;
  }
  bytes_ += static_cast<std::int64_t>(parameters_.size() + 1) * parameters_.front().element_size();
}

torch::Tensor GradientReducer::reduce(const torch::Tensor& weighted_loss) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto options = parameters_.front().options();
  // Beside the last bucket: one flag per parameter (1 where this rank has its gradient), then the loss.
  std::vector<float> has_gradient(parameters_.size());
  for (std::size_t i = 0; i < parameters_.size(); ++i) has_gradient[i] = parameters_[i].grad().defined() ? 1.f : 0.f;
  const auto loss = weighted_loss.defined() ? weighted_loss.detach().reshape({1}).to(options.dtype())
                                            : torch::zeros({1}, options);
  const auto status = torch::cat({torch::tensor(has_gradient).to(options), loss});
  std::vector<torch::Tensor> flats;
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    std::vector<torch::Tensor> parts;
    for (const auto i : buckets_[b]) {
      const auto& p = parameters_[i];
      parts.push_back(p.grad().defined() ? p.grad().reshape(-1) : torch::zeros({p.numel()}, options));
    }
    if (b + 1 == buckets_.size()) parts.push_back(status);
    flats.push_back(torch::cat(parts));
  }
  distributed().all_reduce_sum(flats);
  const auto summed_status = flats.back().slice(0, -status.numel()).to(torch::kCPU, torch::kFloat64);
  const auto* s = summed_status.data_ptr<double>();
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    std::int64_t offset = 0;
    for (const auto i : buckets_[b]) {
      auto& p = parameters_[i];
      const auto summed = flats[b].slice(0, offset, offset + p.numel()).view_as(p);
      offset += p.numel();
      if (s[i] == 0) continue;  // no rank has a gradient for it: it stays without one
      if (p.grad().defined()) p.mutable_grad().copy_(summed);
      else p.mutable_grad() = summed.clone();
    }
  }
  seconds_ += seconds_since(t0);
  return summed_status[-1];
}

}  // namespace llm4sbr::train
