// Gantry's own YAML scanner and parser: bytes → YamlBuilder events in one pass, without tokens.
//
// It reads the YAML that manifests are written in (block maps and sequences, indentless
// sequences, plain, quoted and block scalars, flow collections, comments, documents, anchors,
// aliases, merge keys, !! and ! tags, CRLF, a BOM) and reproduces libyaml 0.2's events exactly,
// marks included: a scalar spans its text (quotes, block header and the line breaks a block
// scalar takes); a collection starts at its first property or its first token and ends where
// libyaml ends it (the next token for block collections, after the bracket for flow ones); an
// empty value sits right after its ':' or '-'. Everything else, and every error, is "left to
// libyaml" (a FailedPrecondition saying what and where), and ParseYaml parses the stream again
// with libyaml: so the two can only differ in speed. What is left: directives (%YAML, %TAG),
// complex keys (?), named tag handles and verbatim tags, properties on a key or before a
// same-line '-', aliases and collections as keys, content on the '---' line, multi-line plain
// scalars in flow collections and single-pair maps in flow sequences, tabs outside scalars and
// comments, NEL/LS/PS line breaks, a BOM after the start, nesting deeper than 64 levels.
//
// Speed: plain scalars and quoted scalars without escapes are views of the input (no copy until
// the builder's arena); a plain scalar's end is found 16 bytes a step (SSE2; else a 256-entry
// table), and its look past its line for a continuation is reused to reach the next content; map
// keys go to the builder's Key(), not the general Scalar(); the input is checked once up front
// (control characters, UTF-8) in 64-byte blocks.

#include "value/internal/yaml_fast.h"

#include <array>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <cstdint>
#include <cstring>
#include <string>

#include "value/internal/resolve.h"
#include "value/internal/yaml_builder.h"

namespace gantry::value::internal {
namespace {

constexpr int kMaxNesting = 64;
constexpr size_t kMaxSimpleKey = 1000;  // libyaml drops a simple key at 1024 characters

// Bytes that stop the inner loop of a plain scalar in block context.
constexpr std::array<bool, 256> MakeTable(std::string_view stops) {
  std::array<bool, 256> t{};
  for (char c : stops) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kPlainStop = MakeTable(":\t \n\r");
constexpr auto kFlowPlainStop = MakeTable(":\t \n\r,[]{}");
// Bytes that cannot start a key (or a flow node) the scanner takes; like the strchr they
// replace, each also holds '\0'.
constexpr std::array<bool, 256> MakeSet(std::string_view chars) {
  std::array<bool, 256> t = MakeTable(chars);
  t[0] = true;
  return t;
}
constexpr auto kNotBlockKey = MakeSet("?:%@`,[]{}#&!*|>\t");
constexpr auto kNotFlowKey = MakeSet("-?:%@`,[]{}#&!*|>");
constexpr auto kNotFlowNode = MakeSet("?:%@`,[]{}#&!|>");
constexpr auto kFlowEnd = MakeSet(",]}");
constexpr auto kAnchorChar =
    MakeTable("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
constexpr auto kTagChar =
    MakeTable("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");

// Node properties: &anchor and !tag.
struct Props {
  bool any = false;
  std::string_view anchor;
  std::string_view tag;  // as written: "!!str", "!Ref", "!"
  bool own_line = false;  // the node follows on a later line (props belong to a collection)
  YamlPos start;
  YamlPos end;
};

// A scanned scalar. text points into the input or into the parser's scratch buffer.
struct Scalar {
  std::string_view text;
  bool plain = false;
  bool multiline = false;
  YamlPos start;
  YamlPos end;
};

class FastParser {
 public:
  FastParser(std::string_view text, std::string_view filename, const ParseOptions& options)
      : s_(text.data()), n_(text.size()), filename_(filename), builder_(text, filename, options) {}

  Result<std::vector<Value>> Run() {
    if (!Parse()) return error_.ok() ? builder_.TakeError() : std::move(error_);
    return builder_.TakeDocuments();
  }

 private:
  bool Parse() {
    size_t bom = std::string_view(s_, n_).starts_with("\xEF\xBB\xBF") ? 3 : 0;
    p_ = line_start_ = bom;
    if (!CheckInput(bom)) return false;
    if (!SkipToContent()) return false;
    bool first = true;
    while (p_ < n_) {
      if (AtDocMarker('.')) return Leave("'...' outside a document");
      bool explicit_start = AtDocMarker('-');
      if (!explicit_start && !first) return Leave("a document without '---' after another");
      if (!builder_.StartDocument(PosAt(p_))) return false;
      if (explicit_start) {
        p_ += 3;
        SkipBlanks();
        if (!AtLineEnd()) return Leave("content on the '---' line");
        if (!FinishLine()) return false;
      }
      if (NextColumn() >= 0) {
        if (!ParseNode(-1, /*is_value=*/false, /*same_line=*/false)) return false;
        if (NextColumn() >= 0) return Leave("more content after the document's root");
      }
      YamlPos end = PosAt(p_);
      if (AtDocMarker('.')) {
        p_ += 3;
        end = PosAt(p_);
        SkipBlanks();
        if (!AtLineEnd()) return Leave("content on the '...' line");
        if (!FinishLine()) return false;
      }
      if (!builder_.EndDocument(end)) return false;
      first = false;
    }
    return true;
  }

  // ---- positions and small predicates

  // Each scanning function returns false on failure, with the reason in error_ (or in the
  // builder's error); a Status per call was a measurable part of the parse.
  bool Leave(std::string_view why) {
    size_t at = std::min(p_, n_);
    return Fail(FailedPreconditionError("{}:{}:{}: left to libyaml: {}", filename_, line_,
                                        Column(at) + 1, why));
  }
  bool Fail(Status s) {
    error_ = std::move(s);
    return false;
  }

  uint32_t Column(size_t off) const {
    if (ascii_) return static_cast<uint32_t>(off - line_start_);
    uint32_t col = 0;
    for (size_t i = line_start_; i < off; ++i) {
      col += (static_cast<unsigned char>(s_[i]) & 0xC0) != 0x80;
    }
    return col;
  }
  // `off` must be on the current line.
  YamlPos PosAt(size_t off) const { return YamlPos{line_, Column(off) + 1, off}; }

  char At(size_t off) const { return off < n_ ? s_[off] : '\0'; }
  bool IsBreak(size_t off) const { return off < n_ && (s_[off] == '\n' || s_[off] == '\r'); }
  bool IsBlank(size_t off) const { return off < n_ && (s_[off] == ' ' || s_[off] == '\t'); }
  bool IsBlankZ(size_t off) const { return off >= n_ || IsBlank(off) || IsBreak(off); }
  bool AtLineEnd() const { return p_ >= n_ || IsBreak(p_) || s_[p_] == '#'; }
  bool IsEntry(size_t off) const { return At(off) == '-' && IsBlankZ(off + 1); }
  // The first offset at or after `off` whose byte is in `stop`, or n_ (4 bytes a step, without
  // a bounds check for each).
  size_t StopAt(size_t off, const std::array<bool, 256>& stop) const {
    auto at = [&](size_t i) { return stop[static_cast<unsigned char>(s_[i])]; };
    for (; off + 4 <= n_; off += 4) {
      if (at(off)) return off;
      if (at(off + 1)) return off + 1;
      if (at(off + 2)) return off + 2;
      if (at(off + 3)) return off + 3;
    }
    while (off < n_ && !at(off)) ++off;
    return off;
  }
  // StopAt(off, kPlainStop), 16 bytes a step where SSE2 is: CheckInput let no control
  // character but tab, LF and CR through, so the stops are the bytes <= ' ' and ':'.
  size_t PlainStopAt(size_t off) const {
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(' ');
    const __m128i colon = _mm_set1_epi8(':');
    for (; off + 16 <= n_; off += 16) {
      __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s_ + off));
      __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(c, space), c),
                                  _mm_cmpeq_epi8(c, colon));
      if (int mask = _mm_movemask_epi8(stop)) return off + static_cast<size_t>(__builtin_ctz(mask));
    }
#endif
    return StopAt(off, kPlainStop);
  }
  // The first offset at or after `off` that is not a space (indentation: 16 bytes a step where
  // SSE2 is, else 8).
  size_t SpacesEnd(size_t off) const {
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(' ');
    for (; off + 16 <= n_; off += 16) {
      __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s_ + off));
      auto other = static_cast<unsigned>(~_mm_movemask_epi8(_mm_cmpeq_epi8(c, space)) & 0xFFFF);
      if (other) return off + static_cast<size_t>(__builtin_ctz(other));
    }
#endif
    constexpr uint64_t kSpaces = 0x2020202020202020;
    uint64_t word;
    while (off + 8 <= n_ && (std::memcpy(&word, s_ + off, 8), word == kSpaces)) off += 8;
    while (off < n_ && s_[off] == ' ') ++off;
    return off;
  }
  // The offset of the line break ending the line that holds `off` (CR of a CRLF: CheckInput
  // refused a lone CR), or n_.
  size_t LineEnd(size_t off) const {
    const void* lf = off < n_ ? std::memchr(s_ + off, '\n', n_ - off) : nullptr;
    if (!lf) return n_;
    auto at = static_cast<size_t>(static_cast<const char*>(lf) - s_);
    return at > off && s_[at - 1] == '\r' ? at - 1 : at;
  }
  bool AtDocMarker(char c) const {
    return p_ == line_start_ && p_ + 3 <= n_ && s_[p_] == c && s_[p_ + 1] == c &&
           s_[p_ + 2] == c && IsBlankZ(p_ + 3);
  }
  // Column of the next token, or -1 at the end of the stream or of the document.
  int NextColumn() const {
    if (p_ >= n_ || AtDocMarker('-') || AtDocMarker('.')) return -1;
    return static_cast<int>(Column(p_));
  }

  // Consumes the line break at p_ (CRLF or LF; CheckInput refused a lone CR).
  void NewLine() {
    if (s_[p_] == '\r') ++p_;
    ++p_;
    ++line_;
    line_start_ = p_;
  }

  // libyaml refuses control characters and invalid UTF-8; NEL, LS, PS and a BOM inside the text
  // change line counting or whitespace, so those streams are libyaml's.
  bool CheckInput(size_t from) {
    size_t i = from;
    while (i < n_) {
      if (n_ - i >= 64 && PlainBlock(s_ + i)) {
        i += 64;
        continue;
      }
      for (size_t end = std::min(n_, i + 64); i < end;) {
        auto c = static_cast<unsigned char>(s_[i]);
        if ((c >= 0x20 && c < 0x7F) || c == '\n' || c == '\t') {
          ++i;
        } else if (c == '\r') {
          if (At(i + 1) != '\n') return LeaveAt(i, "a CR without LF");
          ++i;
        } else if (c < 0x80) {
          return LeaveAt(i, "a control character");
        } else {
          uint32_t cp = 0;
          size_t len = DecodeUtf8(std::string_view(s_, n_), i, &cp);
          if (len == 0) return LeaveAt(i, "invalid UTF-8");
          if (cp == 0x85 || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF ||
              !((cp >= 0xA0 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
                cp >= 0x10000)) {
            return LeaveAt(i, "a special or non-printable character");
          }
          ascii_ = false;
          i += len;
        }
      }
    }
    return true;
  }
  // True when the 64 bytes at p are all printable ASCII or '\n' (16 at a time where SSE2 is).
  static bool PlainBlock(const char* p) {
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i del = _mm_set1_epi8(0x7F);
    const __m128i lf = _mm_set1_epi8('\n');
    __m128i bad = _mm_setzero_si128();
    for (int k = 0; k < 64; k += 16) {
      __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k));
      // Signed compare: bytes >= 0x80 are negative, so "< 0x20" takes them too.
      __m128i low = _mm_andnot_si128(_mm_cmpeq_epi8(c, lf), _mm_cmplt_epi8(c, space));
      bad = _mm_or_si128(bad, _mm_or_si128(low, _mm_cmpeq_epi8(c, del)));
    }
    return _mm_movemask_epi8(bad) == 0;
#else
    unsigned char flag = 0;
    for (int j = 0; j < 64; ++j) {
      auto c = static_cast<unsigned char>(p[j]);
      flag |= static_cast<unsigned char>((c >= 0x7F) | ((c < 0x20) & (c != '\n')));
    }
    return flag == 0;
#endif
  }

  bool LeaveAt(size_t off, std::string_view why) {
    return Fail(FailedPreconditionError("{}: byte {}: left to libyaml: {}", filename_, off, why));
  }

  // ---- whitespace

  void SkipBlanks() {
    while (IsBlank(p_)) ++p_;
  }
  // Spaces (not tabs) after ':' or '-', where libyaml still allows a simple key.
  bool SkipSpaces() {
    while (At(p_) == ' ') ++p_;
    if (At(p_) == '\t') return Leave("a tab after an indicator");
    return true;
  }
  // From a line start (or the end): past empty lines, comment lines and the indentation of the
  // next line with content.
  bool SkipToContent() {
    for (;;) {
      size_t q = p_;
      q = SpacesEnd(q);
      if (q < n_ && s_[q] == '\t') {
        p_ = q;
        return Leave("a tab in indentation");
      }
      if (q < n_ && s_[q] == '#') {
        while (q < n_ && !IsBreak(q)) ++q;
      }
      p_ = q;
      if (!IsBreak(p_)) return true;
      NewLine();
    }
  }
  // After a node that ends inside a line: blanks and a comment to the line end, then on to the
  // next content.
  bool FinishLine() {
    SkipBlanks();
    if (p_ == next_.from) {
      p_ = next_.to;
      line_ += next_.lines;
      line_start_ = next_.line_start;
      return true;
    }
    if (At(p_) == '#') {
      p_ = LineEnd(p_);
    }
    if (p_ >= n_) return true;
    if (!IsBreak(p_)) return Leave("more content after a value on its line");
    NewLine();
    return SkipToContent();
  }
  // Inside flow collections: blanks, breaks and comments.
  bool SkipFlowSpace() {
    for (;;) {
      SkipBlanks();
      if (At(p_) == '#') {
        p_ = LineEnd(p_);
      }
      if (p_ >= n_) return Leave("an unclosed flow collection");
      if (!IsBreak(p_)) return true;
      NewLine();
      if (AtDocMarker('-') || AtDocMarker('.')) return Leave("a document marker in a flow collection");
    }
  }

  // ---- properties

  bool ScanProps(Props* props, bool flow) {
    while (p_ < n_ && (s_[p_] == '&' || s_[p_] == '!')) {
      if (!props->any) props->start = PosAt(p_);
      props->any = true;
      if (s_[p_] == '&') {
        if (!props->anchor.empty()) return Leave("two anchors on one node");
        size_t b = ++p_;
        while (p_ < n_ && kAnchorChar[static_cast<unsigned char>(s_[p_])]) ++p_;
        if (p_ == b) return Leave("an empty anchor");
        props->anchor = std::string_view(s_ + b, p_ - b);
      } else {
        if (!props->tag.empty()) return Leave("two tags on one node");
        bool secondary = At(p_ + 1) == '!';
        size_t at = p_;
        p_ += secondary ? 2 : 1;
        size_t b = p_;
        while (p_ < n_ && kTagChar[static_cast<unsigned char>(s_[p_])]) ++p_;
        if (secondary && p_ == b) return Leave("an empty !! tag");
        props->tag = std::string_view(s_ + at, p_ - at);
      }
      char c = At(p_);
      if (!IsBlankZ(p_) && !(flow && (c == ',' || c == ']' || c == '}'))) {
        return Leave("a property followed by an unexpected character");
      }
      props->end = PosAt(p_);
      SkipBlanks();
    }
    return true;
  }

  // ---- scalars

  // A plain scalar in block context. Lines after the first continue it when indented at least
  // `min_column` (libyaml folds them: one break → ' ', n breaks → n-1 '\n'). A key (`single_line`)
  // stops at its line's end. Stops before ": ", " #" and the line end.
  bool ScanPlain(int min_column, bool single_line, Scalar* result) {
    Scalar& out = *result;
    out = Scalar();
    out.plain = true;
    out.start = PosAt(p_);
    size_t begin = p_;
    size_t end = p_;  // after the last non-blank of the current line
    bool folded = false;
    for (;;) {
      size_t seg = p_;
      for (;;) {
        p_ = PlainStopAt(p_);
        if (p_ >= n_ || IsBreak(p_)) break;
        char c = s_[p_];
        if (c == ':') {
          if (IsBlankZ(p_ + 1)) break;
          ++p_;
          continue;
        }
        // Blanks: content when more content follows on the line.
        size_t q = p_;
        bool tab = false;
        while (IsBlank(q)) tab |= s_[q++] == '\t';
        if (q >= n_ || IsBreak(q) || s_[q] == '#' || (s_[q] == ':' && IsBlankZ(q + 1))) {
          end = p_;
          p_ = q;
          goto line_done;
        }
        if (tab) return Leave("a tab inside a plain scalar");
        p_ = q;
      }
      end = p_;
    line_done:
      if (folded) scratch_.append(s_ + seg, end - seg);
      if (single_line || !IsBreak(p_)) break;
      // A continuation line? Look past the break, empty lines and the indentation.
      size_t q = p_;
      uint32_t breaks = 0;
      size_t line_start = q;
      for (;;) {
        q += s_[q] == '\r' ? 2 : 1;
        ++breaks;
        line_start = q;
        q = SpacesEnd(q);
        if (q < n_ && s_[q] == '\t') return Leave("a tab in a plain scalar's indentation");
        if (!IsBreak(q)) break;
      }
      auto column = static_cast<int>(q - line_start);
      bool marker = column == 0 && q + 3 <= n_ &&
                    ((s_[q] == '-' && s_[q + 1] == '-' && s_[q + 2] == '-') ||
                     (s_[q] == '.' && s_[q + 1] == '.' && s_[q + 2] == '.')) &&
                    IsBlankZ(q + 3);
      if (q >= n_ || column < min_column || marker || s_[q] == '#') {
        // FinishLine would find the same next content (unless a comment line comes first).
        if (q >= n_ || s_[q] != '#') next_ = {p_, q, breaks, line_start};
        break;
      }
      if (!folded) {
        scratch_.assign(s_ + begin, end - begin);
        folded = true;
      }
      if (breaks == 1) {
        scratch_ += ' ';
      } else {
        scratch_.append(breaks - 1, '\n');
      }
      line_ += breaks;
      line_start_ = line_start;
      p_ = q;
      out.multiline = true;
    }
    out.text = folded ? std::string_view(scratch_) : std::string_view(s_ + begin, end - begin);
    out.end = PosAt(end);
    return true;
  }

  // A plain scalar inside a flow collection, on one line.
  bool ScanPlainFlow(Scalar* result) {
    Scalar& out = *result;
    out = Scalar();
    out.plain = true;
    out.start = PosAt(p_);
    size_t begin = p_;
    size_t end = p_;
    for (;;) {
      p_ = StopAt(p_, kFlowPlainStop);
      end = p_;
      if (p_ >= n_ || IsBreak(p_)) break;
      char c = s_[p_];
      if (c == ':') {
        if (IsBlankZ(p_ + 1)) break;
        return Leave("':' inside a plain scalar in a flow collection");
      }
      if (c != ' ' && c != '\t') break;  // , [ ] { }
      size_t q = p_;
      while (IsBlank(q)) ++q;
      char d = At(q);
      if (q >= n_ || IsBreak(q) || d == '#' || d == ',' || d == '[' || d == ']' || d == '{' ||
          d == '}' || (d == ':' && IsBlankZ(q + 1))) {
        break;
      }
      if (s_[p_] == '\t' || s_[q - 1] == '\t') return Leave("a tab inside a plain scalar");
      p_ = q;
    }
    size_t after = p_;
    while (IsBlank(after)) ++after;
    if (IsBreak(after)) {
      // The scalar ends here only when the next content is an indicator; otherwise it would be
      // a multi-line plain scalar.
      size_t save = p_;
      uint32_t line = line_;
      size_t line_start = line_start_;
      if (!SkipFlowSpace()) return false;
      char d = At(p_);
      bool ends = d == ',' || d == ']' || d == '}' || (d == ':' && IsBlankZ(p_ + 1));
      p_ = save;
      line_ = line;
      line_start_ = line_start;
      if (!ends) return Leave("a multi-line plain scalar in a flow collection");
    }
    out.text = std::string_view(s_ + begin, end - begin);
    out.end = PosAt(end);
    return true;
  }

  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static void AppendUtf8(std::string& out, uint32_t v) {
    if (v <= 0x7F) {
      out += static_cast<char>(v);
    } else if (v <= 0x7FF) {
      out += static_cast<char>(0xC0 + (v >> 6));
      out += static_cast<char>(0x80 + (v & 0x3F));
    } else if (v <= 0xFFFF) {
      out += static_cast<char>(0xE0 + (v >> 12));
      out += static_cast<char>(0x80 + ((v >> 6) & 0x3F));
      out += static_cast<char>(0x80 + (v & 0x3F));
    } else {
      out += static_cast<char>(0xF0 + (v >> 18));
      out += static_cast<char>(0x80 + ((v >> 12) & 0x3F));
      out += static_cast<char>(0x80 + ((v >> 6) & 0x3F));
      out += static_cast<char>(0x80 + (v & 0x3F));
    }
  }

  // A single- or double-quoted scalar, folded and unescaped as libyaml does.
  bool ScanQuoted(Scalar* result) {
    Scalar& out = *result;
    out = Scalar();
    out.start = PosAt(p_);
    char quote = s_[p_];
    bool single = quote == '\'';
    uint32_t first_line = line_;
    ++p_;
    // The common case: one line, no escapes: a view of the input.
    size_t q = p_;
    while (q < n_ && s_[q] != quote && s_[q] != '\n' && s_[q] != '\r' && s_[q] != '\\') ++q;
    if (q < n_ && s_[q] == quote && !(single && At(q + 1) == '\'')) {
      out.text = std::string_view(s_ + p_, q - p_);
      p_ = q + 1;
      out.end = PosAt(p_);
      return true;
    }
    std::string& text = scratch_;
    text.clear();
    std::string blanks;
    for (;;) {
      if (AtDocMarker('-') || AtDocMarker('.')) return Leave("a document marker in a quoted scalar");
      if (p_ >= n_) return Leave("an unterminated quoted scalar");
      bool leading_blanks = false;
      while (p_ < n_ && !IsBlankZ(p_)) {
        char c = s_[p_];
        if (single && c == '\'' && At(p_ + 1) == '\'') {
          text += '\'';
          p_ += 2;
        } else if (c == quote) {
          break;
        } else if (!single && c == '\\' && IsBreak(p_ + 1)) {
          ++p_;
          NewLine();
          leading_blanks = true;
          break;
        } else if (!single && c == '\\') {
          if (!Escape(text)) return false;
        } else {
          text += c;
          ++p_;
        }
      }
      if (At(p_) == quote && p_ < n_) break;
      bool leading_break = false;
      uint32_t trailing_breaks = 0;
      while (IsBlank(p_) || IsBreak(p_)) {
        if (IsBlank(p_)) {
          if (!leading_blanks) blanks += s_[p_];
          ++p_;
        } else {
          if (!leading_blanks) {
            blanks.clear();
            leading_break = true;
            leading_blanks = true;
          } else {
            ++trailing_breaks;
          }
          NewLine();
        }
      }
      if (leading_blanks) {
        if (leading_break && trailing_breaks == 0) {
          text += ' ';
        } else {
          text.append(trailing_breaks, '\n');
        }
      } else {
        text += blanks;
        blanks.clear();
      }
    }
    ++p_;
    out.text = text;
    out.multiline = line_ != first_line;
    out.end = PosAt(p_);
    return true;
  }

  bool Escape(std::string& text) {
    char e = At(p_ + 1);
    size_t digits = 0;
    switch (e) {
      case '0': text += '\0'; break;
      case 'a': text += '\x07'; break;
      case 'b': text += '\x08'; break;
      case 't': case '\t': text += '\x09'; break;
      case 'n': text += '\x0A'; break;
      case 'v': text += '\x0B'; break;
      case 'f': text += '\x0C'; break;
      case 'r': text += '\x0D'; break;
      case 'e': text += '\x1B'; break;
      case ' ': text += ' '; break;
      case '"': text += '"'; break;
      case '\\': text += '\\'; break;
      case '/': text += '/'; break;
      case 'N': text += "\xC2\x85"; break;
      case '_': text += "\xC2\xA0"; break;
      case 'L': text += "\xE2\x80\xA8"; break;
      case 'P': text += "\xE2\x80\xA9"; break;
      case 'x': digits = 2; break;
      case 'u': digits = 4; break;
      case 'U': digits = 8; break;
      default: return Leave("an unknown escape");
    }
    p_ += 2;
    if (digits == 0) return true;
    uint32_t v = 0;
    for (size_t i = 0; i < digits; ++i) {
      int h = Hex(At(p_ + i));
      if (h < 0) return Leave("a bad hex escape");
      v = (v << 4) | static_cast<uint32_t>(h);
    }
    if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) return Leave("an invalid escaped character");
    AppendUtf8(text, v);
    p_ += digits;
    return true;
  }

  // A literal (|) or folded (>) block scalar; `indent` is the enclosing block's column.
  bool ScanBlockScalar(int indent, Scalar* result) {
    Scalar& out = *result;
    out = Scalar();
    out.start = PosAt(p_);
    bool literal = s_[p_] == '|';
    ++p_;
    int chomping = 0;
    int increment = 0;
    auto chomp = [&] {
      if (At(p_) == '+' || At(p_) == '-') chomping = s_[p_++] == '+' ? 1 : -1;
    };
    auto digit = [&]() -> bool {
      char c = At(p_);
      if (c < '0' || c > '9') return true;
      if (c == '0') return false;
      increment = c - '0';
      ++p_;
      return true;
    };
    if (At(p_) == '+' || At(p_) == '-') {
      chomp();
      if (!digit()) return Leave("a block scalar indentation indicator of 0");
    } else {
      if (!digit()) return Leave("a block scalar indentation indicator of 0");
      chomp();
    }
    SkipBlanks();
    if (At(p_) == '#') {
      p_ = LineEnd(p_);
    }
    if (p_ < n_ && !IsBreak(p_)) return Leave("content after a block scalar header");
    if (p_ < n_) NewLine();
    size_t end = p_;
    int block_indent = increment ? (indent >= 0 ? indent + increment : increment) : 0;
    std::string& text = scratch_;
    text.clear();
    bool leading_break = false;
    uint32_t trailing_breaks = 0;
    // Indentation spaces and empty lines; fixes the indentation from the first content line.
    auto breaks = [&]() -> bool {
      int max_indent = 0;
      end = p_;
      for (;;) {
        if (block_indent == 0) {
          p_ = SpacesEnd(p_);
        } else if (size_t limit = line_start_ + static_cast<size_t>(block_indent); p_ < limit) {
          p_ = std::min(SpacesEnd(p_), limit);
        }
        max_indent = std::max(max_indent, static_cast<int>(p_ - line_start_));
        if ((block_indent == 0 || static_cast<int>(p_ - line_start_) < block_indent) &&
            At(p_) == '\t') {
          return Leave("a tab in a block scalar's indentation");
        }
        if (!IsBreak(p_)) break;
        NewLine();
        ++trailing_breaks;
        end = p_;
      }
      if (block_indent == 0) block_indent = std::max({max_indent, indent + 1, 1});
      return true;
    };
    if (!breaks()) return false;
    bool leading_blank = false;
    while (static_cast<int>(p_ - line_start_) == block_indent && p_ < n_) {
      bool trailing_blank = IsBlank(p_);
      if (!literal && leading_break && !leading_blank && !trailing_blank) {
        if (trailing_breaks == 0) text += ' ';
      } else if (leading_break) {
        text += '\n';
      }
      leading_break = false;
      text.append(trailing_breaks, '\n');
      trailing_breaks = 0;
      leading_blank = IsBlank(p_);
      size_t b = p_;
      p_ = LineEnd(p_);
      text.append(s_ + b, p_ - b);
      if (p_ < n_) {
        NewLine();
        leading_break = true;
      }
      if (!breaks()) return false;
    }
    if (chomping != -1 && leading_break) text += '\n';
    if (chomping == 1) text.append(trailing_breaks, '\n');
    out.text = text;
    out.multiline = true;
    out.end = YamlPos{line_, 1, end};
    return true;
  }

  // ---- nodes

  // Counts nesting for the duration of one node.
  struct Nest {
    explicit Nest(int* d) : depth(d) { ++*depth; }
    ~Nest() { --*depth; }
    int* depth;
  };

  bool EmitScalar(const Scalar& sc, const Props& props) {
    return EmitScalar(sc.text, sc.plain, props, props.any ? props.start : sc.start, sc.end);
  }
  bool EmitScalar(std::string_view text, bool plain, const Props& props, YamlPos start,
                  YamlPos end) {
    if (props.tag.empty()) return builder_.Scalar(text, plain, {}, props.anchor, start, end);
    // The full tag as libyaml resolves it: "!!x" → "tag:yaml.org,2002:x", "!x" stays.
    std::string tag = props.tag.starts_with("!!")
                          ? std::string("tag:yaml.org,2002:").append(props.tag.substr(2))
                          : std::string(props.tag);
    return builder_.Scalar(text, plain, tag, props.anchor, start, end);
  }

  // The node at p_ in block context; `indent` is the column of the enclosing block collection
  // (-1 at the root). `is_value`: the node is a map value; `same_line`: it starts on the line of
  // its key or '-'. Returns with p_ at the next token.
  bool ParseNode(int indent, bool is_value, bool same_line) {
    Nest nest(&depth_);
    if (depth_ > kMaxNesting) return Leave("nesting deeper than 64 levels");
    Props props;
    if ((At(p_) == '&' || At(p_) == '!') && !ScanProps(&props, /*flow=*/false)) return false;
    if (props.any && AtLineEnd()) {
      if (!FinishLine()) return false;
      int col = NextColumn();
      if (col == indent && is_value && IsEntry(p_)) {
        return ParseBlockSeq(col, props, props.start, /*indentless=*/true);
      }
      if (col <= indent) {
        return EmitScalar("", true, props, props.start, props.end);
      }
      same_line = false;
      props.own_line = true;
    }
    char c = At(p_);
    YamlPos start = props.any ? props.start : PosAt(p_);
    if (IsEntry(p_)) {
      if ((same_line && is_value) || (props.any && !props.own_line)) {
        return Leave("a '-' on the line of its key or of properties");
      }
      return ParseBlockSeq(static_cast<int>(Column(p_)), props, start, /*indentless=*/false);
    }
    switch (c) {
      case '[':
      case '{': {
        if (!ParseFlow(props, start)) return false;
        SkipBlanks();
        if (At(p_) == ':') return Leave("a flow collection as a key");
        return FinishLine();
      }
      case '*': {
        if (props.any) return Leave("properties on an alias");
        YamlPos at = PosAt(p_);
        std::string_view name;
        if (!ScanAliasName(false, &name)) return false;
        if (!builder_.Alias(name, at)) return false;
        SkipBlanks();
        if (At(p_) == ':') return Leave("an alias as a key");
        return FinishLine();
      }
      case '|':
      case '>': {
        Scalar sc;
        if (!ScanBlockScalar(indent, &sc)) return false;
        if (!EmitScalar(sc, props)) return false;
        return SkipToContent();
      }
      case '"':
      case '\'': {
        Scalar sc;
        if (!ScanQuoted(&sc)) return false;
        return ScalarOrKey(sc, props, is_value, same_line);
      }
      case '?':
      case ':':
        if (IsBlankZ(p_ + 1)) return Leave("a complex key (?) or an empty key");
        break;
      case '%': case '@': case '`': case ',': case ']': case '}': case '#': case '&': case '!':
      case '\t':
        return Leave("a character that cannot start a node here");
      default:
        break;
    }
    Scalar sc;
    if (!ScanPlain(indent + 1, false, &sc)) return false;
    return ScalarOrKey(sc, props, is_value, same_line);
  }

  // After a scalar: a key when ": " follows (a block map starts there), else a value.
  bool ScalarOrKey(const Scalar& sc, const Props& props, bool is_value, bool same_line) {
    SkipBlanks();
    if (At(p_) == ':' && IsBlankZ(p_ + 1)) {
      if (same_line && is_value) return Leave("a map on the line of its key");
      if (props.any && !props.own_line) return Leave("properties on a key");
      if (sc.multiline || sc.end.offset - sc.start.offset > kMaxSimpleKey) {
        return Leave("a multi-line or long key");
      }
      if (!builder_.StartCollection(
          true, props.anchor, props.any ? props.start : sc.start, sc.start)) return false;
      return ParseBlockMapEntries(static_cast<int>(sc.start.column - 1), sc);
    }
    if (!EmitScalar(sc, props)) return false;
    return FinishLine();
  }

  bool ScanAliasName(bool flow, std::string_view* name) {
    size_t b = ++p_;
    while (p_ < n_ && kAnchorChar[static_cast<unsigned char>(s_[p_])]) ++p_;
    char c = At(p_);
    if (p_ == b || !(IsBlankZ(p_) || (flow && (c == ',' || c == ']' || c == '}')))) {
      return Leave("an unusual alias");
    }
    *name = std::string_view(s_ + b, p_ - b);
    return true;
  }

  // A key at p_ of a block map at `col` (not the first one).
  bool ScanKey(int col, Scalar* result) {
    char c = At(p_);
    Scalar& sc = *result;
    if (c == '"' || c == '\'') {
      if (!ScanQuoted(&sc)) return false;
    } else if (c == '-' && IsBlankZ(p_ + 1)) {
      return Leave("a '-' among the keys of a map");
    } else if (c == '?' && IsBlankZ(p_ + 1)) {
      return Leave("a complex key (?)");
    } else if (kNotBlockKey[static_cast<unsigned char>(c)]) {
      return Leave("a key that is not a plain or quoted scalar");
    } else {
      if (!ScanPlain(col + 1, true, &sc)) return false;
    }
    SkipBlanks();
    if (!(At(p_) == ':' && IsBlankZ(p_ + 1))) return Leave("a map entry without ': '");
    if (sc.multiline || sc.end.offset - sc.start.offset > kMaxSimpleKey) {
      return Leave("a multi-line or long key");
    }
    return true;
  }

  // After the ':' of a key or a '-' at p_, in a block collection at column `col`: the node on the
  // same line, or on the lines below (indented more; for a map value also an indentless
  // sequence), or else an empty scalar right after the indicator.
  bool ParseAfterIndicator(int col, bool is_value, bool indentless) {
    YamlPos mark = PosAt(p_ + 1);
    ++p_;
    if (!SkipSpaces()) return false;
    if (!AtLineEnd()) return ParseNode(col, is_value, /*same_line=*/true);
    if (!FinishLine()) return false;
    int next = NextColumn();
    if (next > col) return ParseNode(col, is_value, /*same_line=*/false);
    if (next == col && is_value && IsEntry(p_)) {
      return ParseBlockSeq(col, Props{}, PosAt(p_), /*indentless=*/true);
    }
    if (next == col && !is_value && !IsEntry(p_) && !indentless) {
      return Leave("a key among the entries of a sequence");
    }
    return builder_.Scalar("", true, {}, {}, mark, mark);
  }

  // The entries of a block map at column `col` (started by the caller) from its scanned first
  // key on; p_ is at that key's ':'.
  bool ParseBlockMapEntries(int col, Scalar key) {
    for (;;) {
      if (!builder_.Key(key.text, key.plain, key.start, key.end)) return false;
      if (!ParseAfterIndicator(col, /*is_value=*/true, /*indentless=*/false)) return false;
      int next = NextColumn();
      if (next < col) break;
      if (next > col) return Leave("a line indented more than the keys of its map");
      if (!ScanKey(col, &key)) return false;
    }
    YamlPos end = PosAt(std::min(p_, n_));
    return builder_.EndCollection(end, end);
  }

  // A block sequence whose first '-' is at p_, column `col`; indentless when it is the value of
  // a key at the same column.
  // Tags on collections are ignored (as on libyaml's path).
  bool ParseBlockSeq(int col, const Props& props, YamlPos start, bool indentless) {
    if (!builder_.StartCollection(false, props.anchor, start, PosAt(p_ + 1))) return false;
    for (;;) {
      if (!ParseAfterIndicator(col, /*is_value=*/false, indentless)) return false;
      int next = NextColumn();
      if (next == col && IsEntry(p_)) continue;
      if (next < col) break;
      if (next == col && indentless) break;  // the next key of the map it is the value of
      return Leave("a line indented unlike the entries of its sequence");
    }
    YamlPos end = PosAt(std::min(p_, n_));
    return builder_.EndCollection(end, end);
  }

  // A flow sequence or map at p_ ('[' or '{'), nested ones included.
  bool ParseFlow(const Props& props, YamlPos start) {
    Nest nest(&depth_);
    if (depth_ > kMaxNesting) return Leave("nesting deeper than 64 levels");
    bool is_map = s_[p_] == '{';
    char close = is_map ? '}' : ']';
    if (!builder_.StartCollection(is_map, props.anchor, start, PosAt(p_ + 1))) return false;
    ++p_;
    if (!SkipFlowSpace()) return false;
    while (s_[p_] != close) {
      if (is_map) {
        Scalar key;
        char c = s_[p_];
        if (c == '"' || c == '\'') {
          if (!ScanQuoted(&key)) return false;
        } else if (kNotFlowKey[static_cast<unsigned char>(c)]) {
          return Leave("a flow map key that is not a plain or quoted scalar");
        } else {
          if (!ScanPlainFlow(&key)) return false;
        }
        SkipBlanks();
        if (At(p_) != ':' || key.multiline ||
            key.end.offset - key.start.offset > kMaxSimpleKey) {
          return Leave("a flow map entry without ':' on the key's line");
        }
        if (!builder_.Key(key.text, key.plain, key.start, key.end)) return false;
        ++p_;
        if (!SkipFlowSpace()) return false;
        if (s_[p_] == ',' || s_[p_] == close) {
          // libyaml puts an empty flow value at the next token (a block one after its ':').
          YamlPos at = PosAt(p_);
          if (!builder_.Scalar("", true, {}, {}, at, at)) return false;
        } else {
          if (!ParseFlowNode()) return false;
        }
      } else {
        if (!ParseFlowNode()) return false;
        SkipBlanks();
        if (At(p_) == ':') return Leave("a single-pair map in a flow sequence");
      }
      if (!SkipFlowSpace()) return false;
      if (s_[p_] == ',') {
        ++p_;
        if (!SkipFlowSpace()) return false;
      } else if (s_[p_] != close) {
        return Leave("a flow collection entry followed by neither ',' nor its end");
      }
    }
    YamlPos at = PosAt(p_);
    ++p_;
    return builder_.EndCollection(at, PosAt(p_));
  }

  // A node inside a flow collection.
  bool ParseFlowNode() {
    Props props;
    if ((At(p_) == '&' || At(p_) == '!') && !ScanProps(&props, /*flow=*/true)) return false;
    if (props.any) if (!SkipFlowSpace()) return false;
    char c = s_[p_];
    YamlPos start = props.any ? props.start : PosAt(p_);
    if (c == '[' || c == '{') return ParseFlow(props, start);
    if (c == '*') {
      if (props.any) return Leave("properties on an alias");
      std::string_view name;
      if (!ScanAliasName(true, &name)) return false;
      return builder_.Alias(name, start);
    }
    Scalar sc;
    if (c == '"' || c == '\'') {
      if (!ScanQuoted(&sc)) return false;
    } else if (c == '-' ? kFlowEnd[static_cast<unsigned char>(At(p_ + 1))] || IsBlankZ(p_ + 1)
                        : kNotFlowNode[static_cast<unsigned char>(c)]) {
      return Leave("a flow node that is not a scalar or collection");
    } else {
      if (!ScanPlainFlow(&sc)) return false;
    }
    return EmitScalar(sc, props);
  }

  const char* s_;
  size_t n_;
  std::string filename_;
  YamlBuilder builder_;
  size_t p_ = 0;
  uint32_t line_ = 1;
  size_t line_start_ = 0;
  bool ascii_ = true;
  int depth_ = 0;
  std::string scratch_;  // folded or unescaped scalar text (one scalar at a time)
  // Where the content after the line break at `from` is, as the last plain scalar found when it
  // looked for a continuation line: FinishLine at that break goes there at once.
  struct NextContent {
    size_t from = SIZE_MAX;
    size_t to = 0;
    uint32_t lines = 0;
    size_t line_start = 0;
  } next_;
  Status error_;         // why the scanner stopped, unless the builder refused an event
};

}  // namespace

Result<std::vector<Value>> ParseYamlFast(std::string_view text, std::string_view filename,
                                         const ParseOptions& options) {
  FastParser parser(text, filename, options);
  return parser.Run();
}

}  // namespace gantry::value::internal
