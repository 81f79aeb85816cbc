#include "proxy/stream_writer.h"

#include <cstring>

namespace portico {

LoopBuffers& loop_buffers(uv_loop_t* loop) { return *static_cast<LoopBuffers*>(loop->data); }

void alloc_from_loop_buffer(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  LoopBuffers& buffers = loop_buffers(handle->loop);
  *buf = uv_buf_init(buffers.read, LoopBuffers::kReadSize);
}

struct StreamWriter::QueuedWrite {
  uv_write_t req;
  std::string data;
  StreamWriter* writer;
};

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

int StreamWriter::write(const uv_buf_t* bufs, unsigned count) {
  size_t total = 0;
  for (unsigned i = 0; i < count; ++i) total += bufs[i].len;
  if (total == 0) return 0;
  size_t written = 0;
  if (queued_ == 0) {
    int n = uv_try_write(stream_, bufs, count);
    if (n >= 0) {
      written = static_cast<size_t>(n);
    } else if (n != UV_EAGAIN) {
      return n;
    }
    if (written == total) return 0;
  }
  // Copy the rest, skipping what the kernel took.
  std::string rest;
  rest.reserve(total - written);
  size_t skip = written;
  for (unsigned i = 0; i < count; ++i) {
    if (skip >= bufs[i].len) {
      skip -= bufs[i].len;
      continue;
    }
    rest.append(bufs[i].base + skip, bufs[i].len - skip);
    skip = 0;
  }
  return queue(std::move(rest));
}

int StreamWriter::write_owned(std::string&& data) {
  if (data.empty()) return 0;
  size_t written = 0;
  if (queued_ == 0) {
    uv_buf_t buf = uv_buf_init(data.data(), static_cast<unsigned>(data.size()));
    int n = uv_try_write(stream_, &buf, 1);
    if (n >= 0) {
      written = static_cast<size_t>(n);
    } else if (n != UV_EAGAIN) {
      return n;
    }
    if (written == data.size()) {
      data.clear();
      return 0;
    }
  }
  if (written > 0) data.erase(0, written);
  return queue(std::move(data));
}

}  // namespace portico
