@problemName Ragged
@dimensions 2
@equalLength false
@classLabel true x y
@data
1,2,3:4,5:x
