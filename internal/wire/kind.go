package wire

// Kind names the envelope's body type ("ping", "mail", ...), for metrics and
// logs; "empty" when there is no body.
func (x *Envelope) Kind() string {
	switch x.GetBody().(type) {
	case *Envelope_Ping:
		return "ping"
	case *Envelope_Ack:
		return "ack"
	case *Envelope_Join:
		return "join"
	case *Envelope_JoinReply:
		return "join_reply"
	case *Envelope_Mail:
		return "mail"
	case *Envelope_MailAck:
		return "mail_ack"
	case *Envelope_MailAcks:
		return "mail_acks"
	case *Envelope_Rumor:
		return "rumor"
	case *Envelope_RumorAck:
		return "rumor_ack"
	case *Envelope_RumorPull:
		return "rumor_pull"
	case *Envelope_Fetch:
		return "fetch"
	case *Envelope_PingReq:
		return "ping_req"
	case *Envelope_Nack:
		return "nack"
	case *Envelope_AeStart:
		return "ae_start"
	case *Envelope_AeMore:
		return "ae_more"
	case *Envelope_AeCells:
		return "ae_cells"
	case *Envelope_AeDiff:
		return "ae_diff"
	case *Envelope_AeRecords:
		return "ae_records"
	case *Envelope_AeAck:
		return "ae_ack"
	case *Envelope_AeError:
		return "ae_error"
	case *Envelope_CertRequest:
		return "cert_request"
	case *Envelope_CertReply:
		return "cert_reply"
	case *Envelope_KeyOp:
		return "key_op"
	case *Envelope_KeyOpReply:
		return "key_op_reply"
	case *Envelope_SpreadQuery:
		return "spread_query"
	case *Envelope_SpreadReply:
		return "spread_reply"
	case *Envelope_PlumGossip:
		return "plum_gossip"
	case *Envelope_PlumIhave:
		return "plum_ihave"
	case *Envelope_PlumPrune:
		return "plum_prune"
	case *Envelope_PlumGraft:
		return "plum_graft"
	case nil:
		return "empty"
	}
	return "unknown"
}

// Updates returns how many records (updates) the envelope carries, inline or
// announced: what the simulator counts as update-carrying traffic.
func (x *Envelope) Updates() int {
	switch b := x.GetBody().(type) {
	case *Envelope_Mail:
		return len(b.Mail.Records)
	case *Envelope_Rumor:
		return len(b.Rumor.Records) + len(b.Rumor.Announces)
	case *Envelope_AeRecords:
		return len(b.AeRecords.Records)
	case *Envelope_PlumGossip:
		return len(b.PlumGossip.Records)
	case *Envelope_PlumIhave:
		n := 0
		for _, ids := range b.PlumIhave.Ids {
			n += len(ids.HlcDeltas)
		}
		return n
	}
	return 0
}

// Mechanisms of Envelope.Mechanism.
const (
	MechanismDirectMail  = "direct-mail"
	MechanismRumor       = "rumor"
	MechanismPlumtree    = "plumtree"
	MechanismAntiEntropy = "anti-entropy"
	MechanismMembership  = "membership"
	MechanismObservation = "observation"
)

// Mechanism names the part of the protocol the envelope's body belongs to:
// direct mail, rumor mongering, epidemic broadcast trees, anti-entropy, membership (failure
// detection, joins) or observation (spread queries); "" when it has no
// body.
func (x *Envelope) Mechanism() string {
	switch x.GetBody().(type) {
	case *Envelope_Mail, *Envelope_MailAck, *Envelope_MailAcks:
		return MechanismDirectMail
	case *Envelope_Rumor, *Envelope_RumorAck, *Envelope_RumorPull, *Envelope_Fetch:
		return MechanismRumor
	case *Envelope_PlumGossip, *Envelope_PlumIhave, *Envelope_PlumPrune, *Envelope_PlumGraft:
		return MechanismPlumtree
	case *Envelope_AeStart, *Envelope_AeMore, *Envelope_AeCells, *Envelope_AeDiff,
		*Envelope_AeRecords, *Envelope_AeAck, *Envelope_AeError:
		return MechanismAntiEntropy
	case *Envelope_Ping, *Envelope_Ack, *Envelope_PingReq, *Envelope_Nack, *Envelope_Join, *Envelope_JoinReply:
		return MechanismMembership
	case *Envelope_SpreadQuery, *Envelope_SpreadReply:
		return MechanismObservation
	}
	return ""
}
