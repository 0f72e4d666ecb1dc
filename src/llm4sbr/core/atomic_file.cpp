#include "llm4sbr/core/atomic_file.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/kill_point.hpp"

namespace llm4sbr {

namespace fs = std::filesystem;

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  tmp_ = target_;
  tmp_ += fmt::format(".tmp.{}", ::getpid());
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) throw Error(fmt::format("{}: cannot create file: {}", tmp_.string(), std::strerror(errno)));
  // Big arrays go out in few large writes.
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : target_(std::move(other.target_)), tmp_(std::move(other.tmp_)), file_(other.file_) {
  other.file_ = nullptr;
  other.tmp_.clear();
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!tmp_.empty()) {
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void AtomicFile::fail(const std::string& what) {
  if (file_) std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  fs::remove(tmp_, ec);
  tmp_.clear();
  throw Error(fmt::format("{}: {}", target_.string(), what));
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  if (!file_) throw Error(fmt::format("{}: write after commit", target_.string()));
  if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes)
    fail(fmt::format("write failed (disk full?): {}", std::strerror(errno)));
}

void AtomicFile::commit() {
  if (!file_) throw Error(fmt::format("{}: committed twice", target_.string()));
  const bool flushed = std::fflush(file_) == 0;
  const int flush_errno = errno;  // the cause, before fclose can overwrite it
  if (kill_points_armed()) kill_point("write:" + target_.filename().string());
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed)
    fail(fmt::format("write failed on close (disk full?): {}", std::strerror(flushed ? errno : flush_errno)));
  std::error_code ec;
  fs::rename(tmp_, target_, ec);
  if (ec) fail(fmt::format("cannot rename {} into place: {}", tmp_.string(), ec.message()));
  tmp_.clear();
  remove_orphaned_temporaries(target_.parent_path(), target_.filename().string());
}

std::vector<fs::path> remove_orphaned_temporaries(const fs::path& dir, std::string_view name) {
  std::vector<fs::path> removed;
  std::error_code ec;
  for (fs::directory_iterator it(dir.empty() ? "." : dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string file = it->path().filename().string();
    const auto at = file.rfind(".tmp.");
    if (at == std::string::npos || (!name.empty() && std::string_view(file).substr(0, at) != name)) continue;
    const char* digits = file.data() + at + 5;
    pid_t pid = 0;
    const auto [rest, err] = std::from_chars(digits, file.data() + file.size(), pid);
    if (err != std::errc() || rest != file.data() + file.size() || pid <= 0) continue;
    // kill(pid, 0) fails with ESRCH only when no such process exists: a live writer's file stays.
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    if (fs::remove(it->path(), rm)) removed.push_back(it->path());
  }
  return removed;
}

void write_file_atomically(const fs::path& file, std::string_view text) {
  AtomicFile out(file);
  out.write(text);
  out.commit();
}

}  // namespace llm4sbr
