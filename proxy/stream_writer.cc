#include "proxy/stream_writer.h"

#include <array>
#include <cstring>

namespace portico {
namespace {
// Gather blocks kept per loop: 256 KiB of small ones, 128 KiB of large ones at most. A poll that
// finds N busy connections takes up to N blocks at once (2N with their backends); what the free
// list cannot keep goes back to malloc on every loop turn, and glibc then hands the top of the
// heap back to the kernel and takes it again the next turn (brk, with a TLB flush on every
// core). With 8 blocks kept, that was a fifth of portico's CPU time in the redirect benchmark
// (50 connections).
constexpr size_t kMaxFreeSmallBlocks = 128;
constexpr size_t kMaxFreeLargeBlocks = 8;
constexpr unsigned kMaxGatherBufs = 7;

size_t total_length(const uv_buf_t* bufs, unsigned count) {
  size_t total = 0;
  for (unsigned i = 0; i < count; ++i) total += bufs[i].len;
  return total;
}

// The bytes of `bufs` from offset `skip` on, in one string.
std::string concat_from(const uv_buf_t* bufs, unsigned count, size_t skip) {
  std::string rest;
  rest.reserve(total_length(bufs, count) - skip);
  for (unsigned i = 0; i < count; ++i) {
    if (skip >= bufs[i].len) {
      skip -= bufs[i].len;
      continue;
    }
    rest.append(bufs[i].base + skip, bufs[i].len - skip);
    skip = 0;
  }
  return rest;
}
}  // namespace

LoopBuffers& loop_buffers(uv_loop_t* loop) { return *static_cast<LoopBuffers*>(loop->data); }

void alloc_from_loop_buffer(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  LoopBuffers& buffers = loop_buffers(handle->loop);
  *buf = uv_buf_init(buffers.read, LoopBuffers::kReadSize);
}

// ---------------------------------------------------------------------------------------------
// WriteBatch

void WriteBatch::start(uv_loop_t* loop) {
  uv_check_init(loop, &check_);
  check_.data = this;
  uv_check_start(&check_, &WriteBatch::on_check);
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  uv_prepare_init(loop, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, &WriteBatch::on_prepare);
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
}

void WriteBatch::on_check(uv_check_t* handle) {
  static_cast<WriteBatch*>(handle->data)->flush_all();
}

void WriteBatch::on_prepare(uv_prepare_t* handle) {
  static_cast<WriteBatch*>(handle->data)->flush_all();
}

void WriteBatch::add(StreamWriter* writer) {
  // Gathered bytes keep the loop alive until they are out, as a queued write would.
  if (!head_) uv_ref(reinterpret_cast<uv_handle_t*>(&check_));
  writer->in_batch_ = true;
  writer->batch_prev_ = nullptr;
  writer->batch_next_ = head_;
  if (head_) head_->batch_prev_ = writer;
  head_ = writer;
}

void WriteBatch::remove(StreamWriter* writer) {
  if (writer->batch_prev_) {
    writer->batch_prev_->batch_next_ = writer->batch_next_;
  } else {
    head_ = writer->batch_next_;
  }
  if (writer->batch_next_) writer->batch_next_->batch_prev_ = writer->batch_prev_;
  writer->batch_prev_ = writer->batch_next_ = nullptr;
  writer->in_batch_ = false;
  if (!head_) uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
}

void WriteBatch::flush_all() {
  // An owner told of a flush may write again (to this or another stream): the loop picks
  // that up, so nothing waits for the next poll.
  while (head_) {
    StreamWriter* writer = head_;
    remove(writer);
    writer->flush();
  }
}

std::vector<std::unique_ptr<char[]>>& WriteBatch::free_list(size_t size) {
  return size == kSmallBlockSize ? free_small_ : free_large_;
}

char* WriteBatch::take_block(size_t size) {
  auto& free = free_list(size);
  if (free.empty()) return new char[size];
  char* block = free.back().release();
  free.pop_back();
  return block;
}

void WriteBatch::give_block(char* block, size_t size) {
  auto& free = free_list(size);
  if (free.size() < (size == kSmallBlockSize ? kMaxFreeSmallBlocks : kMaxFreeLargeBlocks)) {
    free.emplace_back(block);
  } else {
    delete[] block;
  }
}

// ---------------------------------------------------------------------------------------------
// StreamWriter

struct StreamWriter::QueuedWrite {
  uv_write_t req;
  std::string data;
  StreamWriter* writer;
};

StreamWriter::~StreamWriter() { drop_gathered(); }

void StreamWriter::init(uv_stream_t* stream, Owner* owner) {
  stream_ = stream;
  owner_ = owner;
  LoopBuffers& buffers = loop_buffers(stream->loop);
  batch_ = &buffers.batch;
  high_water_ = buffers.write_high_water;
}

int StreamWriter::queue(std::string&& data) {
  auto* w = new QueuedWrite{{}, std::move(data), this};
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, stream_, &buf, 1, &StreamWriter::on_write);
  if (rc != 0) {
    delete w;
    return rc;
  }
  queued_ += buf.len;
  return 0;
}

void StreamWriter::on_write(uv_write_t* req, int status) {
  auto* w = reinterpret_cast<QueuedWrite*>(req);
  StreamWriter* writer = w->writer;
  writer->queued_ -= w->data.size();
  delete w;
  writer->owner_->on_write_done(status);
}

void StreamWriter::gather(const uv_buf_t* bufs, unsigned count, size_t total) {
  const size_t needed = gathered_ + total;  // at most kBlockSize (write() checks)
  if (needed > block_size_) {
    const size_t size = needed <= WriteBatch::kSmallBlockSize ? WriteBatch::kSmallBlockSize
                                                              : WriteBatch::kBlockSize;
    char* block = batch_->take_block(size);
    if (gathered_ > 0) std::memcpy(block, block_, gathered_);
    if (block_) batch_->give_block(block_, block_size_);
    block_ = block;
    block_size_ = size;
  }
  for (unsigned i = 0; i < count; ++i) {
    std::memcpy(block_ + gathered_, bufs[i].base, bufs[i].len);
    gathered_ += bufs[i].len;
  }
  if (!in_batch_) batch_->add(this);
}

void StreamWriter::drop_gathered() {
  if (block_) {
    batch_->give_block(block_, block_size_);
    block_ = nullptr;
    block_size_ = 0;
  }
  gathered_ = 0;
  if (in_batch_) batch_->remove(this);
}

int StreamWriter::send_now(const uv_buf_t* bufs, unsigned count, size_t total) {
  std::array<uv_buf_t, kMaxGatherBufs + 1> all;
  unsigned n = 0;
  if (gathered_ > 0) all[n++] = uv_buf_init(block_, static_cast<unsigned>(gathered_));
  for (unsigned i = 0; i < count; ++i) all[n++] = bufs[i];
  const size_t sum = gathered_ + total;
  size_t written = 0;
  // uv_try_write refuses (EAGAIN) while earlier uv_writes are queued, so order is kept.
  int rc = uv_try_write(stream_, all.data(), n);
  if (rc >= 0) {
    written = static_cast<size_t>(rc);
  } else if (rc != UV_EAGAIN) {
    drop_gathered();
    return rc;
  }
  std::string rest;
  if (written < sum) rest = concat_from(all.data(), n, written);
  drop_gathered();
  return rest.empty() ? 0 : queue(std::move(rest));
}

void StreamWriter::flush() {
  if (gathered_ == 0) return;
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(stream_))) {
    drop_gathered();  // the connection is being torn down; its bytes have nowhere to go
    return;
  }
  int rc = send_now(nullptr, 0, 0);
  owner_->on_write_done(rc < 0 ? rc : 0);
}

void StreamWriter::flush_before_close() {
  if (gathered_ > 0 && queued_ == 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(stream_))) {
    uv_buf_t buf = uv_buf_init(block_, static_cast<unsigned>(gathered_));
    uv_try_write(stream_, &buf, 1);
  }
  drop_gathered();
}

int StreamWriter::write(const uv_buf_t* bufs, unsigned count) {
  const size_t total = total_length(bufs, count);
  if (total == 0) return 0;
  // Invariant: bytes are gathered only while nothing is queued, so the queue is always behind.
  if (queued_ > 0) return queue(concat_from(bufs, count, 0));
  if (count <= kMaxGatherBufs && gathered_ + total <= WriteBatch::kBlockSize) {
    gather(bufs, count, total);
    return 0;
  }
  if (count > kMaxGatherBufs) {
    std::string all = concat_from(bufs, count, 0);
    uv_buf_t buf = uv_buf_init(all.data(), static_cast<unsigned>(all.size()));
    return send_now(&buf, 1, all.size());
  }
  return send_now(bufs, count, total);
}

int StreamWriter::write_owned(std::string&& data) {
  if (data.empty()) return 0;
  uv_buf_t buf = uv_buf_init(data.data(), static_cast<unsigned>(data.size()));
  if (queued_ > 0) return queue(std::move(data));
  if (gathered_ > 0 || data.size() <= WriteBatch::kBlockSize) {
    int rc = write(&buf, 1);
    data.clear();
    return rc;
  }
  // Large and nothing gathered: straight to the socket, and the string itself is queued.
  size_t written = 0;
  int rc = uv_try_write(stream_, &buf, 1);
  if (rc >= 0) {
    written = static_cast<size_t>(rc);
  } else if (rc != UV_EAGAIN) {
    return rc;
  }
  if (written == data.size()) {
    data.clear();
    return 0;
  }
  if (written > 0) data.erase(0, written);
  return queue(std::move(data));
}

}  // namespace portico
