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
	case nil:
		return "empty"
	}
	return "unknown"
}
