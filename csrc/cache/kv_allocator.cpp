#include "cache/kv_allocator.h"

#include <stdexcept>
#include <string>

namespace radixserve {

KVAllocator::KVAllocator(int64_t num_slots, int64_t page_size)
    : size_(num_slots - page_size), page_size_(page_size) {
  if (page_size < 1) {
    throw std::invalid_argument("KVAllocator: page_size must be >= 1, got " +
                                std::to_string(page_size));
  }
  if (num_slots < page_size || num_slots % page_size != 0) {
    throw std::invalid_argument("KVAllocator: num_slots must be a positive multiple of page_size (" +
                                std::to_string(page_size) + "), got " + std::to_string(num_slots));
  }
  num_pages_ = size_ / page_size;
  reset();
}

void KVAllocator::reset() {
  state_.assign(static_cast<size_t>(num_pages_ + 1), kFree);
  state_[0] = kInUse;  // the reserved page is never free
  free_pages_.clear();
  free_pages_.reserve(static_cast<size_t>(num_pages_));
  // Highest page at the bottom of the stack, so a fresh pool hands out pages 1, 2, 3, ...
  for (int64_t p = num_pages_; p >= 1; --p) free_pages_.push_back(p);
}

bool KVAllocator::alloc(int64_t n, std::vector<int64_t>& out) {
  if (n < 0) throw std::invalid_argument("KVAllocator.alloc: n must be >= 0, got " + std::to_string(n));
  const int64_t pages = (n + page_size_ - 1) / page_size_;
  if (pages > static_cast<int64_t>(free_pages_.size())) return false;
  out.reserve(out.size() + static_cast<size_t>(pages * page_size_));
  for (int64_t i = 0; i < pages; ++i) {
    const int64_t page = free_pages_.back();
    free_pages_.pop_back();
    state_[static_cast<size_t>(page)] = kInUse;
    for (int64_t s = 0; s < page_size_; ++s) out.push_back(page * page_size_ + s);
  }
  return true;
}

void KVAllocator::free(const int64_t* slots, int64_t n) {
  // Validate and mark in one pass; on error undo the marks so a failed call changes nothing.
  const size_t mark_start = free_pages_.size();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = slots[i];
    const int64_t page = slot >= 0 ? slot / page_size_ : -1;
    std::string err;
    if (page < 1 || page > num_pages_) {
      err = "KVAllocator.free: slot " + std::to_string(slot) + " is outside the usable range [" +
            std::to_string(page_size_) + ", " + std::to_string(size_ + page_size_) + ")";
    } else if (state_[static_cast<size_t>(page)] == kFree ||
               (page_size_ == 1 && state_[static_cast<size_t>(page)] == kFreeing)) {
      err = "KVAllocator.free: double free of slot " + std::to_string(slot) +
            (page_size_ > 1 ? " (its page is already free)" : "");
    }
    if (!err.empty()) {
      for (size_t j = mark_start; j < free_pages_.size(); ++j) {
        state_[static_cast<size_t>(free_pages_[j])] = kInUse;
      }
      free_pages_.resize(mark_start);
      throw std::invalid_argument(err);
    }
    if (state_[static_cast<size_t>(page)] == kInUse) {
      state_[static_cast<size_t>(page)] = kFreeing;
      free_pages_.push_back(page);
    }
  }
  for (size_t j = mark_start; j < free_pages_.size(); ++j) {
    state_[static_cast<size_t>(free_pages_[j])] = kFree;
  }
}

std::vector<int64_t> KVAllocator::free_slots() const {
  std::vector<int64_t> out;
  out.reserve(free_pages_.size() * static_cast<size_t>(page_size_));
  for (int64_t page : free_pages_) {
    for (int64_t s = 0; s < page_size_; ++s) out.push_back(page * page_size_ + s);
  }
  return out;
}

}  // namespace radixserve
