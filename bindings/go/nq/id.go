package nq

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// ID identifies a peer: a UUID, in the byte order of its text form.
type ID [16]byte

// NewID returns a random (version 4) UUID.
func NewID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic("nq: no random source: " + err.Error())
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// ParseID reads "8f02c060-b59c-4520-9795-369445186a49", with or without
// the dashes, in either case.
func ParseID(s string) (ID, error) {
	var id ID
	digits := strings.ReplaceAll(s, "-", "")
	if len(digits) != 32 || (len(s) != 32 && len(s) != 36) {
		return id, fmt.Errorf("nq: %q is not a UUID", s)
	}
	if _, err := hex.Decode(id[:], []byte(digits)); err != nil {
		return id, fmt.Errorf("nq: %q is not a UUID", s)
	}
	return id, nil
}

// String gives the canonical lower-case text form.
func (id ID) String() string {
	h := hex.EncodeToString(id[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// IsZero reports whether id is all zeros (the nil UUID).
func (id ID) IsZero() bool { return id == ID{} }

func idFromBytes(b []byte) ID {
	var id ID
	copy(id[:], b)
	return id
}
