package memstore

import (
	"sort"
	"strings"
)

// maxChunk is the largest number of items one chunk of an orderedMap holds
// before it splits. Inserting costs a binary search plus moving at most
// maxChunk pointers inside a chunk and, on a split, the chunk index (about
// n/maxChunk entries), which keeps random inserts cheap at 100k+ keys.
const maxChunk = 512

// item is one entry of an orderedMap.
type item[V any] struct {
	key string
	val V
}

// orderedMap is a map from string keys to values that can also be walked in
// key order from any starting key. Lookups go through a hash map; order is
// kept in a two-level sorted list: a slice of chunks, each a sorted slice of
// at most maxChunk items, every key in a chunk below every key in the next.
//
// It is not safe for concurrent use; Store guards it with its mutex.
type orderedMap[V any] struct {
	byKey  map[string]*item[V]
	chunks [][]*item[V]
}

func newOrderedMap[V any]() *orderedMap[V] {
	return &orderedMap[V]{byKey: make(map[string]*item[V])}
}

// len returns the number of entries.
func (m *orderedMap[V]) len() int { return len(m.byKey) }

// get returns the item stored under key, or nil.
func (m *orderedMap[V]) get(key string) *item[V] { return m.byKey[key] }

// put stores val under key, replacing any value already there.
func (m *orderedMap[V]) put(key string, val V) {
	if it := m.byKey[key]; it != nil {
		it.val = val
		return
	}
	it := &item[V]{key: key, val: val}
	m.byKey[key] = it
	m.insert(it)
}

// remove deletes key and reports whether it was present.
func (m *orderedMap[V]) remove(key string) bool {
	if _, ok := m.byKey[key]; !ok {
		return false
	}
	delete(m.byKey, key)
	ci := m.chunkFor(key)
	c := m.chunks[ci]
	i := sort.Search(len(c), func(i int) bool { return c[i].key >= key })
	copy(c[i:], c[i+1:])
	c[len(c)-1] = nil
	c = c[:len(c)-1]
	if len(c) == 0 {
		copy(m.chunks[ci:], m.chunks[ci+1:])
		m.chunks[len(m.chunks)-1] = nil
		m.chunks = m.chunks[:len(m.chunks)-1]
	} else {
		m.chunks[ci] = c
	}
	return true
}

// chunkFor returns the index of the chunk where key belongs: the first chunk
// whose last key is at or after key, or the last chunk. It must only be
// called when there is at least one chunk.
func (m *orderedMap[V]) chunkFor(key string) int {
	ci := sort.Search(len(m.chunks), func(i int) bool {
		c := m.chunks[i]
		return c[len(c)-1].key >= key
	})
	if ci == len(m.chunks) {
		ci--
	}
	return ci
}

// insert places a new item in key order.
func (m *orderedMap[V]) insert(it *item[V]) {
	if len(m.chunks) == 0 {
		c := make([]*item[V], 1, 16)
		c[0] = it
		m.chunks = append(m.chunks, c)
		return
	}
	ci := m.chunkFor(it.key)
	c := m.chunks[ci]
	i := sort.Search(len(c), func(i int) bool { return c[i].key >= it.key })
	c = append(c, nil)
	copy(c[i+1:], c[i:])
	c[i] = it
	if len(c) <= maxChunk {
		m.chunks[ci] = c
		return
	}
	// Split the full chunk in two halves, each with room to grow.
	half := len(c) / 2
	lo := make([]*item[V], half, maxChunk+1)
	copy(lo, c[:half])
	hi := make([]*item[V], len(c)-half, maxChunk+1)
	copy(hi, c[half:])
	m.chunks = append(m.chunks, nil)
	copy(m.chunks[ci+2:], m.chunks[ci+1:])
	m.chunks[ci] = lo
	m.chunks[ci+1] = hi
}

// ascend calls fn for each item whose key has the given prefix and is at or
// after start, in key order, until fn returns false.
func (m *orderedMap[V]) ascend(prefix, start string, fn func(*item[V]) bool) {
	if start < prefix {
		start = prefix
	}
	if len(m.chunks) == 0 {
		return
	}
	ci := m.chunkFor(start)
	c := m.chunks[ci]
	i := sort.Search(len(c), func(i int) bool { return c[i].key >= start })
	for ; ci < len(m.chunks); ci, i = ci+1, 0 {
		for _, it := range m.chunks[ci][i:] {
			if !strings.HasPrefix(it.key, prefix) || !fn(it) {
				return
			}
		}
	}
}
