// The reflection-based protobuf mutator of the fuzz targets (proto_mutator.h).
#include "tests/fuzz/proto_mutator.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "tests/fuzz/fuzz_util.h"

// libFuzzer's default mutator (for input that does not parse).
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace regen::fuzz {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

const std::vector<std::string>* g_words = nullptr;

constexpr int kMaxDepth = 10;
constexpr int kMaxElements = 64;  // per repeated field, as mutation targets

// One place a mutation can land: a singular field (index -1), a repeated field as a list (index
// -1) or one element of a repeated scalar field.
struct Slot {
  Message* msg;
  const FieldDescriptor* field;
  int index;
};

void Collect(Message* m, int depth, std::vector<Slot>& out) {
  const Descriptor* d = m->GetDescriptor();
  const Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    out.push_back({m, f, -1});
    const bool is_message = f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (f->is_repeated()) {
      const int n = std::min(r->FieldSize(*m, f), kMaxElements);
      for (int j = 0; j < n; ++j) {
        if (!is_message) {
          out.push_back({m, f, j});
        } else if (depth < kMaxDepth) {
          Collect(r->MutableRepeatedMessage(m, f, j), depth + 1, out);
        }
      }
    } else if (is_message && depth < kMaxDepth && r->HasField(*m, f)) {
      Collect(r->MutableMessage(m, f), depth + 1, out);
    }
  }
}

// Integer changes wrap (computed unsigned): a mutation must not be undefined behaviour itself.
template <typename T>
T MutateInt(T v, std::mt19937_64& rng) {
  using L = std::numeric_limits<T>;
  const uint64_t u = static_cast<uint64_t>(v);
  switch (rng() % 10) {
    case 0:
      return static_cast<T>(u + 1);
    case 1:
      return static_cast<T>(u - 1);
    case 2:
      return 0;
    case 3:
      return static_cast<T>(-1);
    case 4:
      return L::max();
    case 5:
      return L::min();
    case 6:
      return static_cast<T>(rng() % 17);
    case 7:
      return static_cast<T>(rng());
    case 8:
      return static_cast<T>(0 - u);
    default:
      return static_cast<T>(u * 2 + 1);
  }
}

std::string Word(std::mt19937_64& rng) {
  if (g_words == nullptr || g_words->empty()) return "x";
  return (*g_words)[rng() % g_words->size()];
}

std::string MutateString(std::string s, bool bytes, std::mt19937_64& rng) {
  static const char kChars[] = "-./_a0Z \n\0";
  switch (rng() % 12) {
    case 0:
    case 1:
    case 2:
    case 3:
      return Word(rng);
    case 4:
      return "";
    case 5:
      return std::string(64 + rng() % 300, 'a');  // over name limits
    case 6:
      return std::string(4096, 'b');
    case 7:
      if (!s.empty()) s.resize(rng() % s.size());
      return s;
    case 8:
      s.insert(s.begin() + (s.empty() ? 0 : rng() % (s.size() + 1)), kChars[rng() % 10]);
      return s;
    case 9:
      return "../" + s;
    case 10:
      return Word(rng) + "-" + std::to_string(rng() % 8);
    default:
      // Invalid UTF-8 only where the wire can carry it: proto3 string fields refuse it when
      // parsed (gRPC would drop such a message before the code under test sees it).
      if (bytes) return s + "\xff\xfe\xc3\x28";
      return s + "\xc3\xa9";  // é
  }
}

void MutateScalar(const Slot& s, std::mt19937_64& rng) {
  Message* m = s.msg;
  const FieldDescriptor* f = s.field;
  const Reflection* r = m->GetReflection();
  const int i = s.index;
  const bool rep = i >= 0;
#define REGEN_MUT(Type, Getter, Setter, RGetter, RSetter, Expr) \
  {                                                             \
    Type v = rep ? r->RGetter(*m, f, i) : r->Getter(*m, f);     \
    Type n = Expr;                                              \
    if (rep)                                                    \
      r->RSetter(m, f, i, n);                                   \
    else                                                        \
      r->Setter(m, f, n);                                       \
    return;                                                     \
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      REGEN_MUT(int32_t, GetInt32, SetInt32, GetRepeatedInt32, SetRepeatedInt32, MutateInt(v, rng))
    case FieldDescriptor::CPPTYPE_INT64:
      REGEN_MUT(int64_t, GetInt64, SetInt64, GetRepeatedInt64, SetRepeatedInt64, MutateInt(v, rng))
    case FieldDescriptor::CPPTYPE_UINT32:
      REGEN_MUT(uint32_t, GetUInt32, SetUInt32, GetRepeatedUInt32, SetRepeatedUInt32,
                MutateInt(v, rng))
    case FieldDescriptor::CPPTYPE_UINT64:
      REGEN_MUT(uint64_t, GetUInt64, SetUInt64, GetRepeatedUInt64, SetRepeatedUInt64,
                MutateInt(v, rng))
    case FieldDescriptor::CPPTYPE_DOUBLE:
      REGEN_MUT(double, GetDouble, SetDouble, GetRepeatedDouble, SetRepeatedDouble,
                rng() % 2 ? -v : v + 1)
    case FieldDescriptor::CPPTYPE_FLOAT:
      REGEN_MUT(float, GetFloat, SetFloat, GetRepeatedFloat, SetRepeatedFloat,
                rng() % 2 ? -v : v + 1)
    case FieldDescriptor::CPPTYPE_BOOL:
      REGEN_MUT(bool, GetBool, SetBool, GetRepeatedBool, SetRepeatedBool, !v)
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* e = f->enum_type();
      // Mostly a declared value; sometimes one no version knows (proto3 enums are open).
      const bool open = f->file()->syntax() == google::protobuf::FileDescriptor::SYNTAX_PROTO3;
      int n = e->value(static_cast<int>(rng() % e->value_count()))->number();
      if (open && rng() % 8 == 0) n = static_cast<int>(rng() % 100);
      if (rep)
        r->SetRepeatedEnumValue(m, f, i, n);
      else
        r->SetEnumValue(m, f, n);
      return;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      const bool bytes = f->type() == FieldDescriptor::TYPE_BYTES;
      std::string v = rep ? r->GetRepeatedString(*m, f, i) : r->GetString(*m, f);
      std::string n = MutateString(std::move(v), bytes, rng);
      if (!bytes && !IsValidUtf8(n)) n = Word(rng);  // a cut through a multi-byte character
      if (rep)
        r->SetRepeatedString(m, f, i, std::move(n));
      else
        r->SetString(m, f, std::move(n));
      return;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return;
  }
#undef REGEN_MUT
}

// Appends a new element: a copy of an existing one (then changed a little) or a fresh one.
void AddElement(Message* m, const FieldDescriptor* f, std::mt19937_64& rng) {
  const Reflection* r = m->GetReflection();
  const int n = r->FieldSize(*m, f);
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    Message* e = r->AddMessage(m, f);
    if (n > 0 && rng() % 2) {
      e->CopyFrom(r->GetRepeatedMessage(*m, f, rng() % n));
      MutateMessage(e, rng);
    } else if (rng() % 2) {
      MutateMessage(e, rng);
    }
    return;
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      r->AddInt32(m, f, 0);
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      r->AddInt64(m, f, 0);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      r->AddUInt32(m, f, 0);
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      r->AddUInt64(m, f, 0);
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      r->AddDouble(m, f, 0);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      r->AddFloat(m, f, 0);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      r->AddBool(m, f, false);
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      r->AddEnumValue(m, f, 0);
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      r->AddString(m, f, Word(rng));
      break;
    default:
      return;
  }
  MutateScalar({m, f, n}, rng);
}

void MutateList(Message* m, const FieldDescriptor* f, std::mt19937_64& rng) {
  const Reflection* r = m->GetReflection();
  const int n = r->FieldSize(*m, f);
  const int op = n == 0 ? 0 : static_cast<int>(rng() % 5);
  if (op <= 1) {
    AddElement(m, f, rng);
  } else if (op == 2) {  // remove one
    r->SwapElements(m, f, static_cast<int>(rng() % n), n - 1);
    r->RemoveLast(m, f);
  } else if (op == 3) {  // duplicate one (at the end)
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      const int k = static_cast<int>(rng() % n);
      r->AddMessage(m, f)->CopyFrom(r->GetRepeatedMessage(*m, f, k));
    } else {
      AddElement(m, f, rng);
    }
  } else {  // reorder two
    r->SwapElements(m, f, static_cast<int>(rng() % n), static_cast<int>(rng() % n));
  }
}

void MutateSlot(const Slot& s, std::mt19937_64& rng) {
  const Reflection* r = s.msg->GetReflection();
  if (s.field->is_repeated() && s.index < 0) return MutateList(s.msg, s.field, rng);
  if (s.field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) return MutateScalar(s, rng);
  if (r->HasField(*s.msg, s.field) && rng() % 3 == 0) {
    r->ClearField(s.msg, s.field);
  } else {
    MutateMessage(r->MutableMessage(s.msg, s.field), rng);  // sets it (a oneof switches case)
  }
}

}  // namespace

void SetStringDictionary(const std::vector<std::string>* words) { g_words = words; }

bool ParseInput(const uint8_t* data, size_t size, Message* msg) {
  msg->Clear();
  if (msg->ParseFromArray(data, static_cast<int>(size))) return true;
  msg->Clear();
  // Text format (the seed corpora), quietly.
  class Quiet : public google::protobuf::io::ErrorCollector {
   public:
    void AddError(int, int, const std::string&) override {}
  };
  Quiet quiet;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&quiet);
  if (parser.ParseFromString(std::string(reinterpret_cast<const char*>(data), size), msg)) {
    return true;
  }
  msg->Clear();
  return false;
}

void MutateMessage(Message* msg, std::mt19937_64& rng) {
  std::vector<Slot> slots;
  Collect(msg, 0, slots);
  if (slots.empty()) return;
  MutateSlot(slots[rng() % slots.size()], rng);
}

size_t MutateInput(Message& scratch, uint8_t* data, size_t size, size_t max_size,
                   unsigned int seed) {
  if (!ParseInput(data, size, &scratch)) return LLVMFuzzerMutate(data, size, max_size);
  std::mt19937_64 rng(seed);
  const std::string original = scratch.SerializeAsString();
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (attempt > 0) scratch.ParseFromString(original);
    const int changes = rng() % 4 == 0 ? 2 + static_cast<int>(rng() % 3) : 1;
    for (int i = 0; i < changes; ++i) MutateMessage(&scratch, rng);
    std::string out = scratch.SerializeAsString();
    if (out.size() <= max_size) {
      std::memcpy(data, out.data(), out.size());
      return out.size();
    }
  }
  // Over libFuzzer's current length limit (it starts small and grows): drop elements of
  // top-level lists until it fits, rather than cutting bytes (which breaks the structure).
  scratch.ParseFromString(original);
  const Reflection* r = scratch.GetReflection();
  const Descriptor* d = scratch.GetDescriptor();
  for (std::string out = original; !out.empty(); out = scratch.SerializeAsString()) {
    if (out.size() <= max_size) {
      std::memcpy(data, out.data(), out.size());
      return out.size();
    }
    bool dropped = false;
    for (int i = 0; i < d->field_count() && !dropped; ++i) {
      const FieldDescriptor* f = d->field(i);
      const int n = f->is_repeated() ? r->FieldSize(scratch, f) : 0;
      if (n == 0) continue;
      r->SwapElements(&scratch, f, static_cast<int>(rng() % n), n - 1);
      r->RemoveLast(&scratch, f);
      dropped = true;
    }
    if (!dropped) break;
  }
  return 0;  // nothing fits: libFuzzer tries another mutation
}

size_t CrossOverInputs(Message& a, Message& b, const uint8_t* data1, size_t size1,
                       const uint8_t* data2, size_t size2, uint8_t* out, size_t max_out_size,
                       unsigned int seed) {
  if (!ParseInput(data1, size1, &a) || !ParseInput(data2, size2, &b)) return 0;
  std::mt19937_64 rng(seed);
  const Descriptor* d = a.GetDescriptor();
  const Reflection* r = a.GetReflection();
  std::vector<const FieldDescriptor*> lists;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->is_repeated() && d->field(i)->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      lists.push_back(d->field(i));
    }
  }
  if (lists.empty()) return 0;
  const FieldDescriptor* f = lists[rng() % lists.size()];
  const int na = r->FieldSize(a, f), nb = r->FieldSize(b, f);
  const int keep = na == 0 ? 0 : static_cast<int>(rng() % (na + 1));
  const int from = nb == 0 ? 0 : static_cast<int>(rng() % (nb + 1));
  while (r->FieldSize(a, f) > keep) r->RemoveLast(&a, f);
  for (int j = from; j < nb; ++j) r->AddMessage(&a, f)->CopyFrom(r->GetRepeatedMessage(b, f, j));
  std::string s = a.SerializeAsString();
  if (s.size() > max_out_size) return 0;
  std::memcpy(out, s.data(), s.size());
  return s.size();
}

}  // namespace regen::fuzz
