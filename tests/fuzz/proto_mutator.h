// A small structure-aware mutator for the protobuf-driven fuzz targets (tests/fuzz): Debian has
// no libprotobuf-mutator. An input is one serialized message (binary; text format is accepted too,
// for the seed corpora); a mutation parses it, changes one field through protobuf reflection (an
// integer to +-1, 0, -1, a limit; a string to a dictionary word, empty, long, a bad name; a
// repeated field gains, loses or duplicates an element; an enum gets another value; a message
// field is set or cleared; a oneof switches case) and serializes it back. Unparsable input goes
// to libFuzzer's default mutator. Fuzzer thread only.
//
// Use: REGEN_FUZZ_PROTO_MUTATOR(regen::fuzz::ControllerInput) in the target's .cc defines
// LLVMFuzzerCustomMutator and LLVMFuzzerCustomCrossOver for it; the target parses its input
// with ParseInput.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <google/protobuf/message.h>

namespace regen::fuzz {

// Strings the mutator likes to put into string fields (names the code knows, hostile names and
// paths). Set once, before fuzzing; the list must outlive the fuzzer.
void SetStringDictionary(const std::vector<std::string>* words);

// `msg` from `data`: binary first, else text format. False (msg cleared) when neither parses.
bool ParseInput(const uint8_t* data, size_t size, google::protobuf::Message* msg);

// Changes one field somewhere in `msg` (see the top of this file).
void MutateMessage(google::protobuf::Message* msg, std::mt19937_64& rng);

// libFuzzer's hooks, for a message of the type of `scratch` (cleared and reused).
size_t MutateInput(google::protobuf::Message& scratch, uint8_t* data, size_t size, size_t max_size,
                   unsigned int seed);
// A prefix of one input's top-level repeated field followed by a suffix of the other's.
size_t CrossOverInputs(google::protobuf::Message& a, google::protobuf::Message& b,
                       const uint8_t* data1, size_t size1, const uint8_t* data2, size_t size2,
                       uint8_t* out, size_t max_out_size, unsigned int seed);

}  // namespace regen::fuzz

#define REGEN_FUZZ_PROTO_MUTATOR(Type)                                                          \
  extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,        \
                                            unsigned int seed) {                                \
    static Type scratch;                                                                        \
    return ::regen::fuzz::MutateInput(scratch, data, size, max_size, seed);                     \
  }                                                                                             \
  extern "C" size_t LLVMFuzzerCustomCrossOver(const uint8_t* data1, size_t size1,               \
                                              const uint8_t* data2, size_t size2, uint8_t* out, \
                                              size_t max_out_size, unsigned int seed) {         \
    static Type a, b;                                                                           \
    return ::regen::fuzz::CrossOverInputs(a, b, data1, size1, data2, size2, out, max_out_size,  \
                                          seed);                                                \
  }
