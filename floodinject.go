//go:build faultinject

package hearsay

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/hearsaydb/hearsay/engine"
	"github.com/hearsaydb/hearsay/internal/wire"
)

// HEARSAY_FAULT_FLOOD_MEMBERS=N (faultinject builds only) makes the node
// add N invented alive members to every message it sends: the member
// flood of issue 11, from a node that is otherwise a working member. Its
// peers should quarantine it (see docs/ARCHITECTURE.md, "Peer scoring and
// quarantine").
func init() {
	n, _ := strconv.Atoi(os.Getenv("HEARSAY_FAULT_FLOOD_MEMBERS"))
	if n <= 0 {
		return
	}
	var fake atomic.Uint64
	outgoingHook = func(msgs []engine.Message) []engine.Message {
		for i, m := range msgs {
			env := proto.Clone(m.Env).(*wire.Envelope)
			for range n {
				k := fake.Add(1)
				name := fmt.Sprintf("fake-%s-%d", env.From, k)
				env.Members = append(env.Members, &wire.Member{Name: name, Address: "127.0.0.1:1", Incarnation: 1, State: wire.State_ALIVE, NodeId: 1<<40 + k})
			}
			msgs[i].Env = env
		}
		return msgs
	}
}
