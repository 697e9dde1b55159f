// Every validation error: it names the argument and the value, states the limit and a fix, and the
// outputs are left untouched.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/check/case.h"

using namespace flatattn;
using namespace flatattn::check;

namespace {

struct Fixture {
  std::mt19937_64 rng{fresh_seed()};
  CaseTensors t;
  Options opt;
  Fixture(bool varlen = false) {
    Case c;
    c.batch = 2;
    c.nq = 5;
    c.nk = 7;
    c.hq = 4;
    c.hkv = 2;
    c.d = 8;
    c.varlen = varlen;
    c.options.return_lse = true;
    t = make_case(c, rng, /*with_backward=*/true);
    opt = t.c.options;
  }
};

/// Runs f (expected to throw), checks the message parts and that no output byte changed.
void expect_error(const std::string& argument, const std::string& value_part, Fixture& fx,
                  const std::function<void(Fixture&)>& f) {
  const auto out0 = fx.t.out.storage, lse0 = fx.t.lse.storage, dq0 = fx.t.dq.storage, dk0 = fx.t.dk.storage,
             dv0 = fx.t.dv.storage;
  try {
    f(fx);
    ADD_FAILURE() << "expected an error naming '" << argument << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.argument(), argument) << m;
    EXPECT_NE(m.find(argument), std::string::npos) << m;
    EXPECT_NE(m.find(value_part), std::string::npos) << "value '" << value_part << "' missing: " << m;
    EXPECT_FALSE(e.limit().empty()) << m;
    EXPECT_FALSE(e.fix().empty()) << m;
    EXPECT_NE(m.find("fix:"), std::string::npos) << m;
  }
  EXPECT_EQ(std::memcmp(out0.data(), fx.t.out.storage.data(), out0.size()), 0) << "out was written";
  EXPECT_EQ(std::memcmp(lse0.data(), fx.t.lse.storage.data(), lse0.size()), 0) << "lse was written";
  EXPECT_EQ(std::memcmp(dq0.data(), fx.t.dq.storage.data(), dq0.size()), 0) << "dq was written";
  EXPECT_EQ(std::memcmp(dk0.data(), fx.t.dk.storage.data(), dk0.size()), 0) << "dk was written";
  EXPECT_EQ(std::memcmp(dv0.data(), fx.t.dv.storage.data(), dv0.size()), 0) << "dv was written";
}

void fwd(Fixture& fx, const std::function<void(ForwardArgs&, Options&)>& edit) {
  ForwardArgs a = fx.t.forward_args();
  Options o = fx.opt;
  edit(a, o);
  forward(a, o);
}

void bwd(Fixture& fx, const std::function<void(BackwardArgs&, Options&)>& edit) {
  BackwardArgs a = fx.t.backward_args();
  Options o = fx.opt;
  edit(a, o);
  backward(a, o);
}

}  // namespace

TEST(Validate, ForwardShapeErrors) {
  Fixture fx;
  expect_error("q", "rank 3", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.q.rank = 3; }); });
  expect_error("q", "D = 0", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs& a, Options&) { a.q.shape[3] = 0; a.k.shape[3] = 0; a.v.shape[3] = 0; a.out.shape[3] = 0; });
  });
  expect_error("k", "Hkv = 3", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs& a, Options&) { a.k.shape[2] = 3; a.v.shape[2] = 3; });
  });
  expect_error("k", "D = 4", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.k.shape[3] = 4; }); });
  expect_error("v", "Dv = 4", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.v.shape[3] = 4; }); });
  expect_error("v", "shape", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.v.shape[1] = 6; }); });
  expect_error("k", "batch 1", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs& a, Options&) { a.k.shape[0] = 1; a.v.shape[0] = 1; });
  });
  expect_error("out", "shape (2, 5, 4, 9)", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.out.shape[3] = 9; }); });
  expect_error("q", "strides", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.q.stride[3] = 2; }); });
  expect_error("k", "strides", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.k.stride[1] = -1; }); });
  expect_error("q", "absent", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.q = {}; }); });
  expect_error("q", "stride list", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs& a, Options&) {
      a.q = TensorView::strided(a.q.data, a.q.dtype, {2, 5, 4, 8}, {160, 32, 8});
    });
  });
}

TEST(Validate, ForwardDtypeAndDeviceErrors) {
  Fixture fx;
  expect_error("k", "dtype f16", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.k.dtype = DType::f16; }); });
  expect_error("q", "dtype f64", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs& a, Options&) { a.q.dtype = a.k.dtype = a.v.dtype = a.out.dtype = DType::f64; });
  });
  expect_error("out", "dtype bf16", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.out.dtype = DType::bf16; }); });
  expect_error("v", "device cuda:0", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.v.device = Device::cuda(0); }); });
  if (!cuda_built()) {
    expect_error("q.device", "cuda", fx, [](Fixture& f) {
      fwd(f, [](ForwardArgs& a, Options&) {
        for (TensorView* t : {&a.q, &a.k, &a.v, &a.out, &a.lse}) t->device = Device::cuda(0);
      });
    });
  }
}

TEST(Validate, LseErrors) {
  Fixture fx;
  expect_error("lse", "given", fx, [](Fixture& f) { fwd(f, [](ForwardArgs&, Options& o) { o.return_lse = false; }); });
  expect_error("lse", "absent", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.lse = {}; }); });
  expect_error("lse", "dtype f16", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.lse.dtype = DType::f16; }); });
  expect_error("lse", "shape (2, 4, 4)", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.lse.shape[2] = 4; }); });
}

TEST(Validate, OptionErrors) {
  Fixture fx;
  expect_error("softcap", "-1", fx, [](Fixture& f) { fwd(f, [](ForwardArgs&, Options& o) { o.softcap = -1.f; }); });
  expect_error("softmax_scale", "nan", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs&, Options& o) { o.softmax_scale = std::numeric_limits<float>::quiet_NaN(); });
  });
  expect_error("window.left", "-2", fx, [](Fixture& f) { fwd(f, [](ForwardArgs&, Options& o) { o.window.left = -2; }); });
  expect_error("window.right", "-5", fx, [](Fixture& f) { fwd(f, [](ForwardArgs&, Options& o) { o.window.right = -5; }); });
  expect_error("window.right", "3", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs&, Options& o) { o.causal = true; o.window.right = 3; });
  });
  expect_error("num_threads", "-1", fx, [](Fixture& f) { fwd(f, [](ForwardArgs&, Options& o) { o.num_threads = -1; }); });
}

TEST(Validate, VarlenErrors) {
  Fixture fx(/*varlen=*/true);
  auto cu = [](ForwardArgs& a) { return static_cast<std::int32_t*>(a.varlen->cu_seqlens_q.data); };
  expect_error("cu_seqlens_q", "dtype f32", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs& a, Options&) { a.varlen->cu_seqlens_q.dtype = DType::f32; });
  });
  expect_error("cu_seqlens_k", "length 2", fx, [](Fixture& f) {
    fwd(f, [](ForwardArgs& a, Options&) { a.varlen->cu_seqlens_k.shape[0] = 2; });
  });
  expect_error("cu_seqlens_q", "cu[0] = 1", fx, [&](Fixture& f) {
    fwd(f, [&](ForwardArgs& a, Options&) { cu(a)[0] = 1; });
  });
  static_cast<std::int32_t*>(fx.t.cu_q.data())[0] = 0;
  expect_error("cu_seqlens_q", "last offset 99", fx, [&](Fixture& f) {
    fwd(f, [&](ForwardArgs& a, Options&) { cu(a)[2] = 99; });
  });
  static_cast<std::int32_t*>(fx.t.cu_q.data())[2] = 10;
  expect_error("cu_seqlens_q", "< cu[1]", fx, [&](Fixture& f) {
    fwd(f, [&](ForwardArgs& a, Options&) { cu(a)[2] = 1; });
  });
  static_cast<std::int32_t*>(fx.t.cu_q.data())[2] = 10;
  expect_error("max_seqlen_q", "3", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.varlen->max_seqlen_q = 3; }); });
  expect_error("lse", "shape", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.lse.shape[1] = 3; }); });
  expect_error("q", "rank 4", fx, [](Fixture& f) { fwd(f, [](ForwardArgs& a, Options&) { a.q.rank = 4; }); });
}

TEST(Validate, BackwardErrors) {
  Fixture fx;
  expect_error("dq", "absent", fx, [](Fixture& f) { bwd(f, [](BackwardArgs& a, Options&) { a.dq = {}; }); });
  expect_error("lse", "absent", fx, [](Fixture& f) { bwd(f, [](BackwardArgs& a, Options&) { a.lse = {}; }); });
  expect_error("dk", "shape (2, 6, 2, 8)", fx, [](Fixture& f) { bwd(f, [](BackwardArgs& a, Options&) { a.dk.shape[1] = 6; }); });
  expect_error("dout", "dtype bf16", fx, [](Fixture& f) { bwd(f, [](BackwardArgs& a, Options&) { a.dout.dtype = DType::bf16; }); });
  expect_error("dv", "strides", fx, [](Fixture& f) { bwd(f, [](BackwardArgs& a, Options&) { a.dv.stride[3] = 3; }); });
}

TEST(Validate, MessageHasAllFourParts) {
  Fixture fx;
  ForwardArgs a = fx.t.forward_args();
  a.k.shape[2] = 3;
  a.v.shape[2] = 3;
  try {
    forward(a, fx.opt);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::invalid_argument);
    EXPECT_STREQ(e.what(),
                 "flatattn: k = Hkv = 3 with Hq = 4: Hq must be a multiple of Hkv (GQA/MQA); fix: use Hkv "
                 "dividing Hq, or repeat k/v heads");
  }
}
