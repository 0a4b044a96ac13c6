#include "power_loss_vfs.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <utility>

namespace tinyfed::server::testing {

// SQLite allocates vfs_.szOsFile bytes for each open file and hands them
// to xOpen: this header, then the real VFS's own file object.
struct PowerLossVfs::File {
  sqlite3_file base;  // first: SQLite sees a File as a sqlite3_file
  PowerLossVfs* owner;
  sqlite3_file* real;
  std::string* name;  // relative name when watched, else null; owned
};

PowerLossVfs::PowerLossVfs(const std::string& dir)
    : dir_(std::filesystem::canonical(dir).string() + "/"), real_(sqlite3_vfs_find(nullptr)) {
  methods_ = {};
  // Version 2: shared memory, which WAL needs, but no xFetch/xUnfetch, so
  // SQLite reads through xRead and never writes past the shim via mmap.
  methods_.iVersion = 2;
  methods_.xClose = &Close;
  methods_.xWrite = &Write;
  methods_.xTruncate = &Truncate;
  methods_.xSync = &Sync;
  methods_.xRead = [](sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xRead(real, out, amount, offset);
  };
  methods_.xFileSize = [](sqlite3_file* f, sqlite3_int64* size) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xFileSize(real, size);
  };
  methods_.xLock = [](sqlite3_file* f, int level) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xLock(real, level);
  };
  methods_.xUnlock = [](sqlite3_file* f, int level) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xUnlock(real, level);
  };
  methods_.xCheckReservedLock = [](sqlite3_file* f, int* out) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xCheckReservedLock(real, out);
  };
  methods_.xFileControl = [](sqlite3_file* f, int op, void* arg) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xFileControl(real, op, arg);
  };
  methods_.xSectorSize = [](sqlite3_file* f) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xSectorSize(real);
  };
  methods_.xDeviceCharacteristics = [](sqlite3_file* f) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xDeviceCharacteristics(real);
  };
  methods_.xShmMap = [](sqlite3_file* f, int region, int size, int extend, void volatile** out) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xShmMap(real, region, size, extend, out);
  };
  methods_.xShmLock = [](sqlite3_file* f, int offset, int n, int flags) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xShmLock(real, offset, n, flags);
  };
  methods_.xShmBarrier = [](sqlite3_file* f) {
    sqlite3_file* real = RealOf(f);
    real->pMethods->xShmBarrier(real);
  };
  methods_.xShmUnmap = [](sqlite3_file* f, int delete_flag) {
    sqlite3_file* real = RealOf(f);
    return real->pMethods->xShmUnmap(real, delete_flag);
  };

  // Everything but opening and deleting files goes to the real VFS.
  vfs_ = {};
  vfs_.iVersion = std::min(real_->iVersion, 3);
  vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
  vfs_.mxPathname = real_->mxPathname;
  vfs_.zName = "tinyfed-power-loss";
  vfs_.pAppData = this;
  vfs_.xOpen = &Open;
  vfs_.xDelete = &Delete;
  vfs_.xAccess = [](sqlite3_vfs* vfs, const char* name, int flags, int* out) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xAccess(r, name, flags, out);
  };
  vfs_.xFullPathname = [](sqlite3_vfs* vfs, const char* name, int size, char* out) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xFullPathname(r, name, size, out);
  };
  vfs_.xDlOpen = [](sqlite3_vfs* vfs, const char* name) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xDlOpen(r, name);
  };
  vfs_.xDlError = [](sqlite3_vfs* vfs, int size, char* out) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    r->xDlError(r, size, out);
  };
  vfs_.xDlSym = [](sqlite3_vfs* vfs, void* handle, const char* symbol) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xDlSym(r, handle, symbol);
  };
  vfs_.xDlClose = [](sqlite3_vfs* vfs, void* handle) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    r->xDlClose(r, handle);
  };
  vfs_.xRandomness = [](sqlite3_vfs* vfs, int size, char* out) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xRandomness(r, size, out);
  };
  vfs_.xSleep = [](sqlite3_vfs* vfs, int microseconds) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xSleep(r, microseconds);
  };
  vfs_.xCurrentTime = [](sqlite3_vfs* vfs, double* out) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xCurrentTime(r, out);
  };
  vfs_.xGetLastError = [](sqlite3_vfs* vfs, int size, char* out) {
    sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
    return r->xGetLastError(r, size, out);
  };
  if (vfs_.iVersion >= 2) {
    vfs_.xCurrentTimeInt64 = [](sqlite3_vfs* vfs, sqlite3_int64* out) {
      sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
      return r->xCurrentTimeInt64(r, out);
    };
  }
  if (vfs_.iVersion >= 3) {
    vfs_.xSetSystemCall = [](sqlite3_vfs* vfs, const char* name, sqlite3_syscall_ptr call) {
      sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
      return r->xSetSystemCall(r, name, call);
    };
    vfs_.xGetSystemCall = [](sqlite3_vfs* vfs, const char* name) {
      sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
      return r->xGetSystemCall(r, name);
    };
    vfs_.xNextSystemCall = [](sqlite3_vfs* vfs, const char* name) {
      sqlite3_vfs* r = static_cast<PowerLossVfs*>(vfs->pAppData)->real_;
      return r->xNextSystemCall(r, name);
    };
  }
  sqlite3_vfs_register(&vfs_, /*makeDflt=*/1);
}

PowerLossVfs::~PowerLossVfs() {
  sqlite3_vfs_register(real_, /*makeDflt=*/1);
  sqlite3_vfs_unregister(&vfs_);
}

sqlite3_file* PowerLossVfs::RealOf(sqlite3_file* file) {
  return reinterpret_cast<File*>(file)->real;
}

size_t PowerLossVfs::Mark(uint64_t tag) {
  std::lock_guard<std::mutex> lock(mu_);
  VfsEvent event;
  event.kind = VfsEvent::Kind::kMark;
  event.tag = tag;
  log_.push_back(std::move(event));
  return log_.size() - 1;
}

std::vector<VfsEvent> PowerLossVfs::Log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

size_t PowerLossVfs::LogSize() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_.size();
}

std::string PowerLossVfs::Watched(const char* path) const {
  if (path == nullptr) return std::string();
  const std::string full(path);
  if (full.size() <= dir_.size() || full.compare(0, dir_.size(), dir_) != 0) return std::string();
  return full.substr(dir_.size());
}

template <typename Call>
int PowerLossVfs::Record(VfsEvent event, Call call) {
  std::lock_guard<std::mutex> lock(mu_);
  const int rc = call();
  // A failed call changed nothing that a loss could keep or drop.
  if (rc == SQLITE_OK) log_.push_back(std::move(event));
  return rc;
}

int PowerLossVfs::Open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags,
                       int* out_flags) {
  PowerLossVfs* self = static_cast<PowerLossVfs*>(vfs->pAppData);
  File* f = reinterpret_cast<File*>(file);
  f->base.pMethods = nullptr;
  f->owner = self;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->name = nullptr;
  f->real->pMethods = nullptr;
  const int rc = self->real_->xOpen(self->real_, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    // SQLite calls xClose only on a file whose pMethods is set; ours stays
    // null, so the real one is closed here if it asked to be.
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    return rc;
  }
  const std::string watched = self->Watched(name);
  if (!watched.empty()) f->name = new std::string(watched);
  f->base.pMethods = &self->methods_;
  return SQLITE_OK;
}

int PowerLossVfs::Delete(sqlite3_vfs* vfs, const char* name, int /*sync_dir*/) {
  PowerLossVfs* self = static_cast<PowerLossVfs*>(vfs->pAppData);
  // The directory is not synced for real: the log decides what survives.
  auto call = [&] { return self->real_->xDelete(self->real_, name, 0); };
  const std::string watched = self->Watched(name);
  if (watched.empty()) return call();
  VfsEvent event;
  event.kind = VfsEvent::Kind::kDelete;
  event.file = watched;
  return self->Record(std::move(event), call);
}

int PowerLossVfs::Close(sqlite3_file* file) {
  File* f = reinterpret_cast<File*>(file);
  const int rc = f->real->pMethods->xClose(f->real);
  delete f->name;
  f->name = nullptr;
  return rc;
}

int PowerLossVfs::Write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  File* f = reinterpret_cast<File*>(file);
  auto call = [&] { return f->real->pMethods->xWrite(f->real, data, amount, offset); };
  if (f->name == nullptr) return call();
  VfsEvent event;
  event.kind = VfsEvent::Kind::kWrite;
  event.file = *f->name;
  event.offset = offset;
  event.data.assign(static_cast<const char*>(data), static_cast<size_t>(amount));
  return f->owner->Record(std::move(event), call);
}

int PowerLossVfs::Truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = reinterpret_cast<File*>(file);
  auto call = [&] { return f->real->pMethods->xTruncate(f->real, size); };
  if (f->name == nullptr) return call();
  VfsEvent event;
  event.kind = VfsEvent::Kind::kTruncate;
  event.file = *f->name;
  event.offset = size;
  return f->owner->Record(std::move(event), call);
}

int PowerLossVfs::Sync(sqlite3_file* file, int /*flags*/) {
  File* f = reinterpret_cast<File*>(file);
  // Not passed on: see the header comment.
  if (f->name == nullptr) return SQLITE_OK;
  VfsEvent event;
  event.kind = VfsEvent::Kind::kSync;
  event.file = *f->name;
  return f->owner->Record(std::move(event), [] { return SQLITE_OK; });
}

DurableImage::DurableImage(const std::vector<VfsEvent>* log) : log_(log) {}

void DurableImage::AdvanceTo(size_t point) {
  for (; point_ < point; ++point_) {
    const VfsEvent& event = (*log_)[point_];
    switch (event.kind) {
      case VfsEvent::Kind::kWrite:
      case VfsEvent::Kind::kTruncate:
        pending_[event.file].push_back(point_);
        break;
      case VfsEvent::Kind::kSync: {
        std::string& contents = durable_[event.file];
        for (size_t index : pending_[event.file]) {
          const VfsEvent& change = (*log_)[index];
          const size_t offset = static_cast<size_t>(change.offset);
          if (change.kind == VfsEvent::Kind::kTruncate) {
            contents.resize(offset);
            continue;
          }
          // A write past the end leaves a hole of zeros, as on a real file.
          if (contents.size() < offset + change.data.size()) {
            contents.resize(offset + change.data.size());
          }
          contents.replace(offset, change.data.size(), change.data);
        }
        pending_.erase(event.file);
        break;
      }
      case VfsEvent::Kind::kDelete:
        durable_.erase(event.file);
        pending_.erase(event.file);
        break;
      case VfsEvent::Kind::kMark:
        break;
    }
  }
}

bool DurableImage::WriteTo(const std::string& dir) const {
  for (const auto& [name, contents] : durable_) {
    std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    if (!out.good()) return false;
  }
  return true;
}

}  // namespace tinyfed::server::testing
