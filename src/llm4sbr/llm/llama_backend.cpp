#include "llm4sbr/llm/llama_backend.hpp"

#include <fmt/format.h>
#include <llama.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <numeric>
#include <thread>

#if defined(__SSE2__)
#include <immintrin.h>  // _mm_max_ps (SSE, part of every x86-64)
#endif

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::llm {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void init_llama_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(
        [](ggml_log_level level, const char* text, void*) {
          std::string line(text);
          while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
          if (line.empty()) return;
          if (level == GGML_LOG_LEVEL_ERROR) spdlog::error("llama.cpp: {}", line);
          else if (level == GGML_LOG_LEVEL_WARN) spdlog::warn("llama.cpp: {}", line);
          else spdlog::debug("llama.cpp: {}", line);
        },
        nullptr);
    llama_backend_init();
  });
}

namespace {

// One parallel sequence: the tokens it holds in the KV cache and the answer it is producing.
struct Slot {
  llama_seq_id seq = 0;
  std::vector<llama_token> cached;  // tokens in the KV cache of this sequence, in position order
  std::vector<std::size_t> queue;   // prompt indices still to answer, in order
  std::size_t next = 0;             // position in queue
  // the prompt in progress
  bool busy = false;
  std::size_t prompt = 0;
  std::vector<llama_token> to_decode;  // prompt tokens not yet sent to llama_decode
  std::int32_t logits_at = -1;         // batch row whose logits this slot samples from, -1 = none
  llama_token last = 0;
  std::string text;
  Generation gen;
  Clock::time_point started;
  llama_sampler* sampler = nullptr;
};

std::size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b) {
  std::size_t n = std::min(a.size(), b.size()), k = 0;
  while (k < n && a[k] == b[k]) ++k;
  return k;
}

std::string piece(const llama_vocab* vocab, llama_token t) {
  char buf[256];
  int n = llama_token_to_piece(vocab, t, buf, sizeof(buf), 0, false);
  if (n < 0) {
    std::string big(static_cast<std::size_t>(-n), '\0');
    n = llama_token_to_piece(vocab, t, big.data(), -n, 0, false);
    return big.substr(0, static_cast<std::size_t>(std::max(n, 0)));
  }
  return std::string(buf, static_cast<std::size_t>(n));
}

// The logits of batch position `at` of the last decode; Error where llama.cpp has none.
const float* logits_of(llama_context* ctx, std::int32_t at) {
  const float* logits = llama_get_logits_ith(ctx, at);
  if (!logits) throw Error(fmt::format("llama: no logits at batch position {}", at));
  return logits;
}

// Temperature sampling from `seed`: a fresh chain per prompt, so that a sampled answer depends on its own
// prompt's seed only (not on the slot, or on the prompts the slot answered before). Null for greedy decoding,
// which takes greedy_token from the logits.
llama_sampler* make_sampler(const GenerationOptions& options, std::uint32_t seed) {
  if (options.temperature <= 0) return nullptr;
  llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
  llama_sampler_chain_add(chain, llama_sampler_init_temp(static_cast<float>(options.temperature)));
  llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
  return chain;
}

// A sequence that ran out of work takes the second half of the longest remaining run.
bool steal_work(std::vector<Slot>& slots, Slot& idle) {
  Slot* victim = nullptr;
  std::size_t best = 1;
  for (auto& s : slots) {
    const std::size_t left = s.queue.size() - s.next;
    if (&s != &idle && left > best) victim = &s, best = left;
  }
  if (!victim) return false;
  const std::size_t half = best / 2;
  idle.queue.assign(victim->queue.end() - static_cast<std::ptrdiff_t>(half), victim->queue.end());
  idle.next = 0;
  victim->queue.resize(victim->queue.size() - half);
  return true;
}

}  // namespace

std::vector<std::vector<std::size_t>> prefix_runs(const std::vector<std::vector<std::int32_t>>& tokens, std::size_t n_seq) {
  std::vector<std::size_t> order(tokens.size());
  std::iota(order.begin(), order.end(), 0);
  // Stable: equal prompts keep their order, so the schedule is a function of the prompts alone.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return tokens[a] < tokens[b]; });
  const std::size_t n = order.size();
  std::vector<std::vector<std::size_t>> runs(n_seq);
  for (std::size_t s = 0; s < n_seq; ++s)
    runs[s].assign(order.begin() + static_cast<std::ptrdiff_t>(n * s / n_seq),
                   order.begin() + static_cast<std::ptrdiff_t>(n * (s + 1) / n_seq));
  return runs;
}

std::int64_t reused_prompt_tokens(const std::vector<std::vector<std::int32_t>>& tokens,
                                  const std::vector<std::vector<std::size_t>>& runs) {
  std::int64_t reused = 0;
  for (const auto& run : runs)
    for (std::size_t k = 1; k < run.size(); ++k) {
      const auto &prev = tokens[run[k - 1]], &cur = tokens[run[k]];
      if (!cur.empty()) reused += static_cast<std::int64_t>(std::min(common_prefix(prev, cur), cur.size() - 1));
    }
  return reused;
}

PrefillCount& PrefillCount::operator+=(const PrefillCount& o) {
  prompts += o.prompts;
  prompt_tokens += o.prompt_tokens;
  reused_tokens += o.reused_tokens;
  return *this;
}

std::int32_t greedy_token(const float* logits, std::int32_t n_vocab) {
#if defined(__SSE2__)
  // std::max_element keeps an index per element and runs one value at a time (~120 us a row of 151,936
  // logits, ~1 ms of each 8-sequence decode step with the tiny test model); the blocks' maxima in 16 maxps
  // lanes take ~7 us. The first block holding the largest value, and max_element within it, give the first
  // of equal maxima, as before.
  constexpr std::int32_t kBlock = 256;
  const std::int32_t full = n_vocab / kBlock * kBlock;
  float best = logits[0];
  std::int32_t best_block = 0;
  for (std::int32_t b = 0; b < full; b += kBlock) {
    const float* x = logits + b;
    __m128 m0 = _mm_loadu_ps(x), m1 = _mm_loadu_ps(x + 4), m2 = _mm_loadu_ps(x + 8), m3 = _mm_loadu_ps(x + 12);
    for (std::int32_t i = 16; i < kBlock; i += 16) {
      m0 = _mm_max_ps(m0, _mm_loadu_ps(x + i));
      m1 = _mm_max_ps(m1, _mm_loadu_ps(x + i + 4));
      m2 = _mm_max_ps(m2, _mm_loadu_ps(x + i + 8));
      m3 = _mm_max_ps(m3, _mm_loadu_ps(x + i + 12));
    }
    alignas(16) float lanes[4];
    _mm_store_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
    const float block_max = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
    if (best < block_max) best = block_max, best_block = b;
  }
  auto first_max = [&](std::int32_t from, std::int32_t to) {
    return static_cast<std::int32_t>(std::max_element(logits + from, logits + to) - logits);
  };
  std::int32_t arg = first_max(best_block, std::min(n_vocab, best_block + kBlock));
  if (full < n_vocab && full > 0) {  // the last, partial block
    const std::int32_t tail = first_max(full, n_vocab);
    if (logits[arg] < logits[tail]) arg = tail;
  }
  return arg;
#else
  return static_cast<std::int32_t>(std::max_element(logits, logits + n_vocab) - logits);
#endif
}

LlamaBackend::LlamaBackend(const fs::path& model_file, GenerationOptions options) : options_(std::move(options)) {
  if (!fs::exists(model_file)) throw InputError(model_file.string(), 0, "", "model file not found: give the path of a GGUF chat model (e.g. a Qwen2.5 Instruct GGUF)");
  init_llama_logging();
  llama_model_params mp = llama_model_default_params();
  // Negative = every layer (llama.cpp's convention) when it has a GPU backend; a CPU-only build ignores it.
  mp.n_gpu_layers = static_cast<std::int32_t>(options_.gpu_layers);
  model_ = llama_model_load_from_file(model_file.c_str(), mp);
  if (!model_) throw InputError(model_file.string(), 0, "", "llama.cpp could not load this file as a GGUF model");
  if (!llama_model_has_decoder(model_) || llama_model_has_encoder(model_)) {
    llama_model_free(model_);
    throw InputError(model_file.string(), 0, "", "not a decoder-only chat model (an embedding model belongs in embed.encoder)");
  }
  name_ = "llama:" + model_file.filename().string();
}

LlamaBackend::~LlamaBackend() {
  if (model_) llama_model_free(model_);
}

std::string LlamaBackend::format_chat(const std::string& prompt) const {
  const char* tmpl = llama_model_chat_template(model_, nullptr);
  if (!tmpl) return prompt;
  std::vector<llama_chat_message> msgs;
  if (!system_prompt.empty()) msgs.push_back({"system", system_prompt.c_str()});
  msgs.push_back({"user", prompt.c_str()});
  std::vector<char> buf(2 * (prompt.size() + system_prompt.size()) + 512);
  int n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), true, buf.data(), static_cast<int32_t>(buf.size()));
  if (n > static_cast<int>(buf.size())) {
    buf.resize(static_cast<std::size_t>(n));
    n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), true, buf.data(), static_cast<int32_t>(buf.size()));
  }
  if (n < 0) {
    static std::once_flag warned;
    std::call_once(warned, [&] { spdlog::warn("{}: chat template not supported by llama.cpp; sending raw prompts", name_); });
    return prompt;
  }
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

std::vector<std::int32_t> LlamaBackend::tokenize(const std::string& text) const {
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  std::vector<llama_token> tokens(text.size() + 16);
  int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                         static_cast<int32_t>(tokens.size()), true, true);
  if (n < 0) {
    tokens.resize(static_cast<std::size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                       static_cast<int32_t>(tokens.size()), true, true);
  }
  tokens.resize(static_cast<std::size_t>(std::max(n, 0)));
  return tokens;
}

std::vector<std::vector<std::int32_t>> LlamaBackend::chat_tokens(const std::vector<std::string>& prompts) const {
  std::vector<std::vector<std::int32_t>> tokens(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    tokens[i] = tokenize(format_chat(prompts[i]));
    if (tokens[i].empty()) throw Error(fmt::format("prompt {} tokenizes to nothing", i));
  }
  return tokens;
}

std::size_t LlamaBackend::sequences_for(std::size_t prompts) const {
  return static_cast<std::size_t>(std::clamp<std::int64_t>(options_.parallel, 1, static_cast<std::int64_t>(prompts)));
}

PrefillCount LlamaBackend::count_prefill(const std::vector<std::string>& prompts) const {
  PrefillCount count;
  if (prompts.empty()) return count;
  const auto tokens = chat_tokens(prompts);
  count.prompts = static_cast<std::int64_t>(prompts.size());
  for (const auto& t : tokens) count.prompt_tokens += static_cast<std::int64_t>(t.size());
  count.reused_tokens = reused_prompt_tokens(tokens, prefix_runs(tokens, sequences_for(prompts.size())));
  return count;
}

void LlamaBackend::generate(const std::vector<std::string>& prompts,
                            const std::function<void(std::size_t, const Generation&)>& on_done) {
  if (prompts.empty()) return;
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  const std::int32_t n_vocab = llama_vocab_n_tokens(vocab);
  const auto tokens = chat_tokens(prompts);
  std::size_t longest = 0;
  for (const auto& t : tokens) longest = std::max(longest, t.size());

  const auto n_seq = sequences_for(prompts.size());
  const std::size_t per_seq =
      options_.context > 0 ? static_cast<std::size_t>(options_.context) : longest + static_cast<std::size_t>(options_.max_tokens) + 8;
  if (longest + static_cast<std::size_t>(options_.max_tokens) > per_seq)
    throw ConfigError(fmt::format("llm.context = {} cannot hold the longest prompt ({} tokens) plus llm.max_tokens = {}",
                                  per_seq, longest, options_.max_tokens));
  llama_context_params cp = llama_context_default_params();
  cp.n_seq_max = static_cast<uint32_t>(n_seq);
  cp.n_ctx = static_cast<uint32_t>(per_seq * n_seq);
  cp.n_batch = static_cast<uint32_t>(std::max<std::int64_t>(options_.batch_tokens, 64));
  cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
  cp.kv_unified = false;  // each sequence owns per_seq cells: no sequence can starve another
  const int threads = options_.threads > 0 ? static_cast<int>(options_.threads)
                                           : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  llama_context* ctx = llama_init_from_model(model_, cp);
  if (!ctx) throw Error(fmt::format("{}: could not create a context of {} cells for {} sequences", name_, cp.n_ctx, n_seq));
  llama_memory_t mem = llama_get_memory(ctx);
  llama_batch batch = llama_batch_init(static_cast<int32_t>(cp.n_batch), 0, 1);

  std::vector<Slot> slots(n_seq);
  auto runs = prefix_runs(tokens, n_seq);
  for (std::size_t s = 0; s < n_seq; ++s) {
    slots[s].seq = static_cast<llama_seq_id>(s);
    slots[s].queue = std::move(runs[s]);
  }

  std::int64_t decoded_tokens = 0, generated_tokens = 0, reused_tokens = 0;
  const auto t0 = Clock::now();
  auto cleanup = [&] {
    for (auto& s : slots)
      if (s.sampler) llama_sampler_free(s.sampler);
    llama_batch_free(batch);
    llama_free(ctx);
  };

  auto start_next = [&](Slot& s) {
    if (s.next >= s.queue.size() && !steal_work(slots, s)) return false;
    s.prompt = s.queue[s.next++];
    const auto& want = tokens[s.prompt];
    // Keep the common prefix in the KV cache; at least the last prompt token is decoded for its logits.
    std::size_t keep = std::min(common_prefix(s.cached, want), want.size() - 1);
    if (!llama_memory_seq_rm(mem, s.seq, static_cast<llama_pos>(keep), -1)) {
      llama_memory_seq_rm(mem, s.seq, -1, -1);
      keep = 0;
    }
    s.cached.resize(keep);
    s.to_decode.assign(want.begin() + static_cast<std::ptrdiff_t>(keep), want.end());
    s.busy = true;
    s.text.clear();
    s.gen = Generation{};
    s.gen.prompt_tokens = static_cast<std::int64_t>(want.size());
    s.gen.reused_tokens = static_cast<std::int64_t>(keep);
    s.started = Clock::now();
    if (s.sampler) llama_sampler_free(s.sampler);
    s.sampler = make_sampler(options_, prompt_seed(options_.seed, prompts[s.prompt]));
    reused_tokens += static_cast<std::int64_t>(keep);
    return true;
  };

  auto add_token = [&](Slot& s, llama_token t, bool want_logits) {
    const int32_t i = batch.n_tokens++;
    batch.token[i] = t;
    batch.pos[i] = static_cast<llama_pos>(s.cached.size());
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = s.seq;
    batch.logits[i] = want_logits;
    s.cached.push_back(t);
    if (want_logits) s.logits_at = i;
  };

  try {
    for (auto& s : slots) start_next(s);
    while (std::any_of(slots.begin(), slots.end(), [](const Slot& s) { return s.busy; })) {
      batch.n_tokens = 0;
      for (auto& s : slots) s.logits_at = -1;
      for (auto& s : slots) {
        if (!s.busy) continue;
        if (!s.to_decode.empty()) {
          // Prompt tokens, as many as fit; logits only for the prompt's last token.
          const std::size_t room = cp.n_batch - static_cast<std::size_t>(batch.n_tokens);
          const std::size_t take = std::min(room, s.to_decode.size());
          for (std::size_t k = 0; k < take; ++k) add_token(s, s.to_decode[k], k + 1 == s.to_decode.size());
          s.to_decode.erase(s.to_decode.begin(), s.to_decode.begin() + static_cast<std::ptrdiff_t>(take));
        } else if (static_cast<std::size_t>(batch.n_tokens) < cp.n_batch) {
          add_token(s, s.last, true);
        }
        if (static_cast<std::size_t>(batch.n_tokens) >= cp.n_batch) break;
      }
      if (batch.n_tokens == 0) break;
      if (const int rc = llama_decode(ctx, batch); rc != 0)
        throw Error(fmt::format("{}: llama_decode failed with code {} ({} tokens in the batch)", name_, rc, batch.n_tokens));
      decoded_tokens += batch.n_tokens;

      for (auto& s : slots) {
        if (s.logits_at < 0) continue;
        const llama_token t = s.sampler ? llama_sampler_sample(s.sampler, ctx, s.logits_at)
                                        : greedy_token(logits_of(ctx, s.logits_at), n_vocab);
        const bool eog = llama_vocab_is_eog(vocab, t);
        if (!eog) {
          s.text += piece(vocab, t);
          ++s.gen.completion_tokens;
          ++generated_tokens;
        }
        s.last = t;
        bool stop = eog || s.gen.completion_tokens >= options_.max_tokens;
        for (const auto& st : options_.stop) {
          if (auto at = s.text.find(st); !st.empty() && at != std::string::npos) {
            s.text.resize(at);
            stop = true;
          }
        }
        if (!stop) continue;
        // The sampled token is not in the cache yet: the cache holds prompt + answer so far.
        s.gen.text = trim_answer(s.text);
        s.gen.seconds = std::chrono::duration<double>(Clock::now() - s.started).count();
        s.busy = false;
        on_done(s.prompt, s.gen);
        start_next(s);
      }
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  spdlog::info("{}: {} prompts in {:.1f} s ({:.1f} prompts/s); decoded {} prompt+answer tokens ({:.0f} tok/s), "
               "generated {} ({:.0f} tok/s), {} prompt tokens re-used from the KV cache",
               name_, prompts.size(), secs, prompts.size() / secs, decoded_tokens, decoded_tokens / secs,
               generated_tokens, generated_tokens / secs, reused_tokens);
}

}  // namespace llm4sbr::llm
