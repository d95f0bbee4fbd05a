package transport

// corruptEvery, when set (only by test builds with the faultinject tag,
// see faultinject.go), makes the transport corrupt every corruptEvery-th
// frame it sends, joins and their replies excepted, before sealing and
// signing it: how a real-process test makes a member send frames that
// authenticate and then do not decode.
var corruptEvery uint64

// corruptFrame returns a copy of a plain frame whose payload is no
// protobuf (every byte 0xff: a field key that never ends).
func corruptFrame(frame []byte) []byte {
	out := make([]byte, len(frame))
	copy(out, frame[:min(len(frame), 8)])
	for i := 8; i < len(out); i++ {
		out[i] = 0xff
	}
	return out
}
