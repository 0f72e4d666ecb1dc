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

namespace {

// Removes the temporary files ("NAME.tmp.PID") that killed processes left beside `target`: a kill between
// create and rename leaves one, which nothing reads (the PID differs) but a user would find. A file of a
// process that is still alive (another writer of the same name) is left alone.
void remove_orphaned_temporaries(const fs::path& target) {
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(target.parent_path().empty() ? "." : target.parent_path(), ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(prefix)) continue;
    pid_t pid = 0;
    const char* digits = name.data() + prefix.size();
    const auto [rest, err] = std::from_chars(digits, name.data() + name.size(), pid);
    if (err != std::errc() || rest != name.data() + name.size() || pid <= 0) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(it->path(), ec), ec.clear();
  }
}

}  // namespace

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
  remove_orphaned_temporaries(target_);
}

void write_file_atomically(const fs::path& file, std::string_view text) {
  AtomicFile out(file);
  out.write(text);
  out.commit();
}

}  // namespace llm4sbr
